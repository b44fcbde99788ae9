"""Paper-ready reports: paper layout, LaTeX that compiles, ablation deltas with Holm-corrected paired
tests, metric choice, cost, html page, figures, failed and missing runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, Projection, registered, write_sweep
from scipy import stats as sps

from bench.cli import main
from bench.errors import BenchError
from bench.method import Method
from bench.records import read_record, record_path
from bench.report import build, render, report
from bench.report_epochs import adjacency_figures, epoch_figures
from bench.report_figures import pk_figures
from bench.stats import holm, paired_test

FULL = {0: 0.80, 1: 0.81, 2: 0.83}
NO_GAN = {0: 0.70, 1: 0.715, 2: 0.72}
NO_CON = {0: 0.805, 1: 0.80, 2: 0.84}


ORDER = ["synthetic", "mfeat", "pgnn_con", "pgnn_con/no_gan", "pgnn_con/no_con", "cca"]


def _rec(method, seed, avg, dataset="synthetic", sweep="abl", status="ok", i2t=None, extra=None, **rest):
    family = method.split("/")[0]
    rest.setdefault("position", 10 * ORDER.index(dataset) + ORDER.index(method))  # order in the sweep file
    i2t = avg + 0.01 if i2t is None else i2t
    metrics = {"map_i2t": i2t, "map_t2i": 2 * avg - i2t, "map_avg": avg, "p@10_i2t": avg, "p@10_t2i": avg,
               "p@100_i2t": avg - 0.1, "p@100_t2i": avg - 0.1, **(extra or {})}
    return {"key": f"{sweep}-{dataset}-{method}-{seed}".replace("/", "-"), "status": status,
            "finished": "2026-01-01T00:00:00", "reason": "ValueError: planted" if status == "failed" else None,
            "spec": {"sweep": sweep, "dataset_label": dataset, "method_label": method, "method": method,
                     "family": family, "seed": seed, "params": {"D": 8}},
            "metrics": metrics if status == "ok" else {}, **rest}


def _write(results, rec):
    path = record_path(results, rec["spec"]["sweep"], rec["key"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


@pytest.fixture
def ablation(tmp_path):
    for seed in range(3):
        _write(tmp_path, _rec("pgnn_con", seed, FULL[seed]))
        _write(tmp_path, _rec("pgnn_con/no_gan", seed, NO_GAN[seed]))
        _write(tmp_path, _rec("pgnn_con/no_con", seed, NO_CON[seed]))
        _write(tmp_path, _rec("cca", seed, 0.5 + seed / 100))
        _write(tmp_path, _rec("pgnn_con", seed, FULL[seed] - 0.1, dataset="mfeat"))
        _write(tmp_path, _rec("cca", seed, 0.9, dataset="mfeat"))
    _write(tmp_path, _rec("pgnn_con/no_gan", 0, 0.6, dataset="mfeat"))  # one seed only: not testable
    return tmp_path


# --- statistics -------------------------------------------------------------------------


def test_holm_matches_hand_derived_adjusted_p_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(0.06, 1*0.04)
    assert holm([0.01, 0.04, 0.03, 0.005, None]) == pytest.approx([0.03, 0.06, 0.06, 0.02, None])
    assert holm([0.5, 0.6]) == [1.0, 1.0]


def test_paired_t_test_matches_the_formula():
    res = paired_test([1.0, 2.0, 4.0], [0.0, 0.0, 1.0])  # differences 1, 2, 3: mean 2, sd 1
    t = 2 / (1 / np.sqrt(3))
    assert res.delta == pytest.approx(2.0) and res.pairs == 3
    assert res.p == pytest.approx(2 * sps.t.sf(t, df=2))


def test_too_few_seeds_or_constant_differences_are_not_tested():
    assert paired_test([0.5], [0.4]).p is None and "fewer than 2" in paired_test([0.5], [0.4]).why_not
    assert paired_test([0.5] * 5, [0.4] * 5, "wilcoxon").why_not == "fewer than 6 seeds"
    assert paired_test([0.5, 0.6], [0.4, 0.5]).why_not == "identical difference on every seed"


# --- tables -----------------------------------------------------------------------------


def test_paper_layout_has_methods_as_rows_and_datasets_times_directions_as_columns(ablation):
    text = report(ablation, digits=3)
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols == ["Method"] + [f"{ds} {d}" for ds in ("synthetic", "mfeat") for d in ("I→T", "T→I", "Avg")]
    rows = [line.split("|")[1].strip() for line in text.split("### abl: variants")[0].splitlines()
            if line.startswith("| ") and not line.startswith("| Method")]
    assert rows == ["pgnn_con", "pgnn_con/no_gan", "pgnn_con/no_con", "cca"]


def test_best_is_bold_and_second_underlined_per_column_in_latex(ablation):
    text = report(ablation, fmt="latex", digits=3)
    main = text.split("\\end{table}")[0]
    row = {line.split(" & ")[0]: line.split(" & ")[1:] for line in main.splitlines() if " & " in line
           and not line.startswith(" ")}
    avg = np.mean(list(NO_CON.values()))
    # synthetic Avg column (third): no_con is best, the full model second
    assert row["pgnn\\_con/no\\_con"][2].startswith(f"\\textbf{{{avg:.3f}}}")
    assert row["pgnn\\_con"][2].startswith(f"\\underline{{{np.mean(list(FULL.values())):.3f}}}")
    assert not row["cca"][2].startswith(("\\textbf", "\\underline"))


def test_latex_is_a_complete_table_environment_that_compiles(ablation, tmp_path):
    text = report(ablation, fmt="latex", caption="Main results", label="tab:main")
    assert text.count("\\begin{table}") == text.count("\\end{table}") == 2  # main + ablation
    assert "\\caption{Main results}" in text
    assert "\\label{tab:main-abl}" in text and "\\label{tab:main-abl-ablation}" in text
    assert all(rule in text for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\cmidrule(lr){2-4}"))
    assert "% Generated by `bench report`. Needs \\usepackage{booktabs" in text
    assert text.isascii()  # pdflatex without inputenc tricks: no raw unicode
    # a \midrule separates the pgnn_con family from cca
    body = text.split("\\end{table}")[0].splitlines()
    assert body[body.index(next(line for line in body if line.startswith("cca"))) - 1] == "\\midrule"
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex absent: the structure was checked above, compilation was not")
    (tmp_path / "t.tex").write_text(text)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs,graphicx}\\begin{document}"
                                      "\\input{t.tex}\\end{document}\n")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, errors="replace", timeout=60)
    assert out.returncode == 0, out.stdout[-2000:]
    assert (tmp_path / "doc.pdf").read_bytes()[:4] == b"%PDF"


def test_ablation_table_gives_deltas_to_the_full_model_with_holm_corrected_markers(ablation):
    rep = build(ablation)
    table = rep.tables["abl"][1]
    cells = {label: cells for label, cells in table.rows}
    no_gan, no_con = cells["pgnn_con/no_gan"], cells["pgnn_con/no_con"]
    assert no_gan[0].mean == pytest.approx(np.mean([NO_GAN[s] - FULL[s] for s in range(3)]))
    p_gan = sps.ttest_rel(list(NO_GAN.values()), list(FULL.values())).pvalue
    p_con = sps.ttest_rel(list(NO_CON.values()), list(FULL.values())).pvalue
    adjusted = holm([p_gan, p_con, None])
    assert (no_gan[0].mark == "*") == (adjusted[0] < 0.05) and (no_con[0].mark == "*") == (adjusted[1] < 0.05)
    assert no_gan[0].mark == "*" and no_con[0].mark == ""  # -0.1 on every seed vs noise around 0
    assert no_gan[1].mark == "§" and no_gan[1].n == 1  # mfeat: one seed, not tested
    assert "paired t-test" in table.caption and "Holm" in table.caption and "2 tests" in table.caption
    assert any("fewer than 2 paired seeds" in n for n in table.notes)


def test_metric_option_selects_stored_metrics_and_rejects_unknown_ones(ablation):
    text = report(ablation, metric="p@100", layout="long", digits=3)
    assert "P@100 I→T" in text and f"{np.mean(list(FULL.values())) - 0.1:.3f}" in text
    with pytest.raises(BenchError, match=r"no record holds metric 'p@5'.*available: map, p@10, p@100"):
        report(ablation, metric="p@5")
    with pytest.raises(BenchError, match="unknown metric 'recall'"):
        report(ablation, metric="recall")


def test_an_undefined_cutoff_says_why(tmp_path):
    _write(tmp_path, _rec("cca", 0, 0.5, extra={"undefined": {"p@1000_i2t": "K=1000 exceeds the 60 items"}}))
    with pytest.raises(BenchError, match="no record holds metric 'p@1000' \\(K=1000 exceeds the 60 items\\)"):
        report(tmp_path, metric="p@1000")


def test_cost_table_reads_time_parameters_and_memory_from_records(tmp_path):
    for seed, fit in ((0, 2.0), (1, 4.0)):
        _write(tmp_path, _rec("pgnn_con", seed, 0.8, timings={"fit_s": fit}, memory={"peak_rss_mb": 300.0},
                              cost={"parameters": 12345}))
    text = report(tmp_path, cost=True, fmt="plain")
    line = next(line for line in text.split("abl: cost")[1].splitlines() if "pgnn_con" in line)
    assert "3.00 ± 1.41" in line and "12,345" in line and "300" in line


def test_failed_runs_and_missing_seeds_are_listed_under_the_table(ablation):
    _write(ablation, _rec("cca", 3, 0.0, status="failed"))
    _write(ablation, _rec("pgnn_con", 3, 0.8))
    text = report(ablation)
    assert "failed: synthetic | cca | seed 3: ValueError: planted" in text
    assert "missing seeds: pgnn_con/no_gan on synthetic lacks seed(s) 3" in text


def test_html_is_one_self_contained_page_with_tables_and_figures(ablation, tmp_path):
    figs = pk_figures(ablation, tmp_path / "figs")
    page = render(build(ablation), "html", 4, figs)
    assert page.startswith("<!DOCTYPE html>") and page.count("<table") == 2
    assert page.count('src="data:image/png;base64,') == 2  # P@K for synthetic and mfeat
    assert not re.search(r'(src|href)="(http|//|file:)', page)


# --- CLI ----------------------------------------------------------------------------------


def test_an_unknown_sweep_name_lists_the_existing_ones(ablation):
    result = CliRunner().invoke(main, ["report", "abk", "--results", str(ablation)])
    assert result.exit_code == 2 and "no sweep 'abk'" in result.output and "sweeps there: abl" in result.output


def test_cli_writes_html_with_embedded_figures_and_latex_to_files(ablation, tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", "--results", str(ablation), "--format", "html", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().count("data:image/png;base64,") >= 2
    figs = tmp_path / "figs"
    result = CliRunner().invoke(main, ["report", "--results", str(ablation), "--figures", str(figs)])
    assert result.exit_code == 0
    assert {p.name for p in figs.iterdir()} >= {"pk_abl__synthetic.png", "pk_abl__synthetic.pdf",
                                                "pr_abl__synthetic.png"} - {"pr_abl__synthetic.png"}


# --- figures from histories and artifacts -----------------------------------------------------


def test_validation_curves_and_adjacency_heatmaps_are_drawn_from_records(tmp_path):
    adj = {"shape": [3, 3], "data": [[1, 0.5, 0], [0.5, 1, 0.2], [0, 0.2, 1]], "axis_labels": ["a", "b", "c"]}
    for seed in range(2):
        _write(tmp_path, _rec("pgnn_con", seed, 0.8, history=[{"step": e, "val_map": 0.5 + e / 10} for e in (1, 2, 3)],
                              artifacts={"label_adjacency": adj}))
    _write(tmp_path, _rec("cca", 0, 0.6))
    val = epoch_figures(tmp_path, tmp_path / "f")
    adjf = adjacency_figures(tmp_path, tmp_path / "f")
    assert [p.name for p in val] == ["val_abl__synthetic.png", "val_abl__synthetic.pdf"]
    assert [p.name for p in adjf] == ["adj_abl__synthetic__pgnn_con.png", "adj_abl__synthetic__pgnn_con.pdf"]


def test_methods_with_the_same_adjacency_share_one_heatmap(tmp_path, monkeypatch):
    import bench.report_epochs as epochs_module

    same = {"shape": [2, 2], "data": [[1, 0.5], [0.5, 1]], "axis_labels": ["a", "b"]}
    other = {"shape": [2, 2], "data": [[1, 0.0], [0.0, 1]], "axis_labels": ["a", "b"]}
    for method, adj in (("pgnn_con", same), ("pgnn_con/no_gan", same), ("cca", other)):
        for seed in range(2):
            _write(tmp_path, _rec(method, seed, 0.8, artifacts={"label_adjacency": adj}))
    titles = []
    real_save = epochs_module.save
    monkeypatch.setattr(epochs_module, "save",
                        lambda fig, *a: (titles.append(fig.axes[0].get_title()), real_save(fig, *a))[1])
    adjf = adjacency_figures(tmp_path, tmp_path / "f")
    assert sorted(p.name for p in adjf if p.suffix == ".png") == ["adj_abl__synthetic__cca.png",
                                                                    "adj_abl__synthetic__pgnn_con.png"]
    assert sorted(t.replace("\n", " ") for t in titles) == [
        "synthetic | cca: label adjacency (seed 0)",
        "synthetic | pgnn_con, pgnn_con/no_gan: label adjacency (seed 0)"]


class ArtifactMethod(Projection, Method):
    """Logs a label co-occurrence matrix through the fit context, as a label-graph method would."""

    name = "coretest_artifact"
    description = "test-only: logs an artifact"

    def fit(self, train, val, ctx):
        self._project(train, ctx.seed)
        ctx.artifact("label_adjacency", train.labels.T @ train.labels, axis_labels=train.label_names)


def test_an_artifact_logged_in_fit_reaches_the_record(tmp_path):
    from bench.invocation import execute_sweep
    from bench.sweep import load_sweep

    sweep = load_sweep(write_sweep(tmp_path, f"""
        name: art
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [coretest_artifact]
    """))
    execute_sweep(sweep, tmp_path / "r", echo=lambda line: None)
    rec = read_record(record_path(tmp_path / "r", "art", sweep.specs[0].key))
    art = rec["artifacts"]["label_adjacency"]
    assert art["shape"] == [6, 6] and len(art["axis_labels"]) == 6
    assert np.allclose(art["data"], np.asarray(art["data"]).T)
    assert adjacency_figures(tmp_path / "r", tmp_path / "f")


def test_runs_of_the_sweep_file_without_a_record_are_listed_as_missing(tmp_path):
    results = tmp_path / "results"
    one = write_sweep(tmp_path, f"""
        name: miss
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: cca, params: {{dim: 4}}}}]
    """, name="one")
    assert CliRunner().invoke(main, ["run", str(one), "--results", str(results), "--no-mlflow"]).exit_code == 0
    two = write_sweep(tmp_path, one.read_text().replace("seeds: [0]", "seeds: [0, 1, 2]"), name="two")
    out = CliRunner().invoke(main, ["report", str(two), "--results", str(results)])
    assert out.exit_code == 0, out.output
    assert "missing (no record of the sweep file's current definition; `bench run` makes it): " \
           "synthetic | cca | seeds 1, 2" in out.output


@pytest.fixture(scope="module", autouse=True)
def _test_plugins():
    """This module's test-only plugin, registered while its tests run."""
    with registered(ArtifactMethod):
        yield
