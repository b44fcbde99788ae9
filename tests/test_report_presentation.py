"""What the tables say around their numbers (issue 18 items 1, 4, 9, 11, 13 and the cosmetic
list): unique LaTeX labels, captions and legends in every format, published numbers kept apart,
runs that picked their last epoch, honest memory figures, display names, rules between blocks."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from report_records import rec, write

from bench.cli import main
from bench.report import build, render, report


def _two_sweeps(tmp_path):
    for sweep in ("one", "two"):
        for seed in range(2):
            write(tmp_path, rec("pgnn_con", seed, 0.8 + seed / 100, sweep=sweep))
            write(tmp_path, rec("pgnn_con/no_gan", seed, 0.7 + seed / 50, sweep=sweep, position=1))
    return tmp_path


def test_latex_labels_are_unique_per_table_and_listed(tmp_path):
    text = report(_two_sweeps(tmp_path), fmt="latex", label="tab:res")
    labels = re.findall(r"\\label\{([^}]*)\}", text)
    assert labels == ["tab:res-one", "tab:res-one-ablation", "tab:res-two", "tab:res-two-ablation"]
    assert text.startswith("% One \\label per table") and "tab:res-two-ablation" in text.splitlines()[0]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")
def test_two_sweeps_with_one_label_compile_without_multiply_defined_labels(tmp_path):
    (tmp_path / "t.tex").write_text(report(_two_sweeps(tmp_path / "r"), fmt="latex", label="tab:res"))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs,graphicx}\\begin{document}"
                                      "\\input{t.tex}\\end{document}\n")
    for _ in range(2):  # LaTeX finds a label defined twice when it reads the .aux of a previous run
        out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                             capture_output=True, text=True, errors="replace", timeout=60)
        assert out.returncode == 0, out.stdout[-2000:]
    assert "multiply defined" not in (tmp_path / "doc.log").read_text(errors="replace")


def test_markdown_main_table_has_the_caption_and_legend_latex_has(tmp_path):
    write(tmp_path, rec("cca", 0, 0.5))
    for seed in range(2):
        write(tmp_path, rec("pgnn_con", seed, 0.8 + seed / 100, position=1))
    text = report(tmp_path, caption="Main results")
    head = text.split("| Method")[0]
    assert "Main results." in head
    legend = text.split("| Method")[1]
    assert "Mean ± sample standard deviation over seeds." in legend and "(n=1): one seed" in legend


def test_html_main_table_has_a_caption_element_and_the_legend(tmp_path):
    write(tmp_path, rec("cca", 0, 0.5))
    write(tmp_path, rec("pgnn_con", 0, 0.8, position=1))
    page = render(build(tmp_path, caption="Main results"), "html")
    assert "<caption>Main results.</caption>" in page
    assert '<p class="note">(n=1): one seed, no standard deviation.</p>' in page
    assert '<p class="note">Best mean per column in bold, second underlined.</p>' in page


def test_html_figure_captions_say_what_the_figure_shows(tmp_path):
    for seed in range(2):
        write(tmp_path, rec("cca", seed, 0.5, metrics={"p@1_i2t": 0.5, "p@1_t2i": 0.5, "p@10_i2t": 0.4,
                                                        "p@10_t2i": 0.4}))
    out = CliRunner().invoke(main, ["report", "--results", str(tmp_path), "--format", "html", "-o",
                                    str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", (tmp_path / "r.html").read_text())
    assert captions and all(not re.fullmatch(r"[\w.-]+", c) for c in captions)  # not a file stem
    assert any(c.startswith("Precision@K on synthetic (sweep s)") for c in captions)


# --- published numbers ------------------------------------------------------------------------


PUBLISHED = """
entries:
  - method: pgnn_con
    dataset: synthetic
    metric: map
    i2t: 0.95
    t2i: 0.93
    source: {paper: "A. Author, Some paper, 2023", table: "Table 2", protocol: "test-selected"}
"""


def test_published_numbers_are_rows_of_their_own_never_ranked_with_measured_ones(tmp_path):
    for seed in range(2):
        write(tmp_path / "r", rec("cca", seed, 0.5))
        write(tmp_path / "r", rec("pgnn_con", seed, 0.8 + seed / 100, position=1))
    (tmp_path / "pub.yaml").write_text(PUBLISHED)
    text = report(tmp_path / "r", fmt="latex", against=str(tmp_path / "pub.yaml"))
    main = text.split("\\end{table}")[0]
    row = next(line for line in main.splitlines() if line.startswith("pgnn\\_con (published)"))
    assert "0.9500" in row and "0.9400" in row and "\\textbf" not in row and "\\underline" not in row
    body = main.splitlines()
    assert body[body.index(row) - 1] == "\\midrule"  # a block of its own
    assert "\\textbf{0.8050}" in main  # the best *measured* mean keeps its bold
    assert "A. Author, Some paper, 2023, Table 2, protocol test-selected" in main


def test_a_published_number_without_its_source_is_refused_with_one_line(tmp_path):
    write(tmp_path / "r", rec("cca", 0, 0.5))
    (tmp_path / "pub.yaml").write_text(PUBLISHED.replace('table: "Table 2", ', ""))
    out = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "r"), "--against",
                                    str(tmp_path / "pub.yaml")])
    assert out.exit_code == 2 and len(out.stderr.strip().splitlines()) == 1 and "source.table" in out.stderr


def test_the_shipped_published_file_loads_and_holds_only_sourced_numbers():
    from bench.report_published import SHIPPED, load_published

    files = sorted(SHIPPED.glob("*.yaml"))
    assert [f.stem for f in files] == ["tpami2023"]
    for entry in load_published("tpami2023"):
        assert entry.paper and entry.table and entry.protocol


# --- notes ------------------------------------------------------------------------------------


def test_runs_that_selected_their_last_epoch_are_named_under_the_table(tmp_path):
    history = [{"step": e, "val_map": 0.5 + e / 10, "loss": 2 - e / 10} for e in (1, 2, 3)]
    write(tmp_path, rec("pgnn_con", 0, 0.8, history=history, best_epoch=3))
    write(tmp_path, rec("pgnn_con", 1, 0.8, history=history, best_epoch=2))
    write(tmp_path, rec("cca", 0, 0.5, position=1))
    text = report(tmp_path)
    assert "Selected epoch = last epoch" in text and "pgnn_con (synthetic 1 of 2 seeds)" in text
    assert "cca (" not in text


def test_the_cost_table_shows_a_per_run_peak_when_records_hold_one(tmp_path):
    write(tmp_path, rec("cca", 0, 0.5, memory={"peak_rss_mb": 300.0, "peak_delta_mb": 42.0}))
    text = report(tmp_path, cost=True, fmt="plain")
    assert "run peak MiB" in text and "42" in text.split("s: cost")[1] and "the run's own increase" in text


def test_the_cost_table_says_when_its_memory_is_the_process_running_peak(tmp_path):
    write(tmp_path, rec("cca", 0, 0.5, memory={"peak_rss_mb": 300.0}))
    text = report(tmp_path, cost=True)
    assert "process peak MiB" in text and "not a per-run figure" in text


# --- cosmetics ---------------------------------------------------------------------------------


def test_baselines_share_one_block_and_a_model_with_its_variants_another(tmp_path):
    for i, method in enumerate(("cca", "kcca", "label_regression", "pgnn_con", "pgnn_con/no_gan")):
        write(tmp_path, rec(method, 0, 0.5 + i / 100, position=i))
    body = report(tmp_path, fmt="latex").split("\\end{table}")[0].splitlines()
    first = body.index(next(line for line in body if line.startswith("cca")))
    assert body[first:].count("\\midrule") == 1
    assert body[body.index(next(line for line in body if line.startswith("pgnn\\_con &"))) - 1] == "\\midrule"


def test_a_one_row_table_bolds_nothing(tmp_path):
    write(tmp_path, rec("cca", 0, 0.5))
    assert "**" not in report(tmp_path)
    rows = [line for line in report(tmp_path, fmt="latex").splitlines() if line.startswith("cca &")]
    assert len(rows) == 1 and "\\textbf" not in rows[0]


def test_display_names_replace_identifiers_in_rows_and_columns(tmp_path):
    write(tmp_path, rec("pgnn_con", 0, 0.8, dataset="mirflickr"))
    write(tmp_path, rec("pgnn_con/no_gan", 0, 0.7, dataset="mirflickr", position=1))
    text = report(tmp_path, names="paper")
    assert "| P-GNN-CON " in text and "| P-GNN-CON w/o GAN " in text and "MIRFlickr Avg" in text
    (tmp_path / "names.yaml").write_text("methods: {pgnn_con: Ours}\nvariants: {no_gan: '- GAN'}\n")
    assert "| Ours - GAN " in report(tmp_path, names=str(tmp_path / "names.yaml"))


def test_a_sweep_named_ablation_does_not_get_a_doubled_title(tmp_path):
    write(tmp_path, rec("pgnn_con", 0, 0.8, sweep="ablation"))
    write(tmp_path, rec("pgnn_con/no_gan", 0, 0.7, sweep="ablation", position=1))
    assert "ablation: ablation" not in report(tmp_path)


def test_markdown_says_how_it_marks_the_second_best_and_nothing_else(tmp_path):
    for seed in range(2):
        write(tmp_path, rec("cca", seed, 0.5 + seed / 100))
        write(tmp_path, rec("pgnn_con", seed, 0.8 + seed / 100, position=1))
        write(tmp_path, rec("dagnn", seed, 0.7 + seed / 100, position=2))
    text = report(tmp_path)
    assert "_0.7" in text  # the second best is in italics in markdown ...
    assert "second in italics" in text and "underlined" not in text  # ... and the caption does not say otherwise
