"""Reports read records only: mean and sample std over seeds, newest record wins, best in bold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.errors import BenchError
from bench.records import iter_records, record_path
from bench.report import records_frame, report, summarise

I2T = {("cca", 0): 0.50, ("cca", 1): 0.54, ("cca", 2): 0.49,
       ("label_regression", 0): 0.61, ("label_regression", 1): 0.58, ("label_regression", 2): 0.66}
T2I = {("cca", 0): 0.47, ("cca", 1): 0.52, ("cca", 2): 0.51,
       ("label_regression", 0): 0.44, ("label_regression", 1): 0.45, ("label_regression", 2): 0.40}


def _record(method, seed, i2t, t2i, finished="2026-01-01T00:00:00", sweep="fake", dataset="synthetic",
            status="ok", key=None, spec_method=None, **spec):
    if spec_method:
        spec["method"] = spec_method
    return {
        "key": key or f"{sweep}-{dataset}-{method}-{seed}-{finished}", "status": status, "finished": finished,
        "spec": {"sweep": sweep, "dataset_label": dataset, "method_label": method, "seed": seed, **spec},
        "metrics": {"map_i2t": i2t, "map_t2i": t2i, "map_avg": (i2t + t2i) / 2, "pr_i2t": {"recall": [0, 1]}},
    }


def _write(results, rec):
    path = record_path(results, rec["spec"]["sweep"], rec["key"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


@pytest.fixture
def results(tmp_path):
    for (method, seed), i2t in I2T.items():
        _write(tmp_path, _record(method, seed, i2t, T2I[(method, seed)]))
    return tmp_path


def test_mean_and_sample_std_over_seeds_match_numpy(results):
    table = summarise(records_frame(iter_records(results)))
    for method in ("cca", "label_regression"):
        row = table[table["method"] == method].iloc[0]
        i2t = np.array([I2T[(method, s)] for s in range(3)])
        t2i = np.array([T2I[(method, s)] for s in range(3)])
        assert row["seeds"] == 3
        assert row["map_i2t_mean"] == pytest.approx(i2t.mean())
        assert row["map_i2t_std"] == pytest.approx(i2t.std(ddof=1))
        assert row["map_t2i_std"] == pytest.approx(t2i.std(ddof=1))
        assert row["map_avg_mean"] == pytest.approx(((i2t + t2i) / 2).mean())


def test_the_markdown_table_shows_mean_plus_minus_std(results):
    text = report(results)
    i2t = np.array([I2T[("cca", s)] for s in range(3)])
    assert f"{i2t.mean():.4f} ± {i2t.std(ddof=1):.4f}" in text


def test_one_seed_has_no_std_and_the_table_says_n_equals_1(tmp_path):
    _write(tmp_path, _record("cca", 0, 0.5, 0.4))
    table = summarise(records_frame([_record("cca", 0, 0.5, 0.4)]))
    assert np.isnan(table["map_i2t_std"].iloc[0])
    text = report(tmp_path)
    assert "0.5000 (n=1)" in text and "± 0.0000" not in text


def test_identical_values_over_seeds_are_shown_as_deterministic_not_plus_minus_zero(tmp_path):
    for seed in (0, 1, 2):
        _write(tmp_path, _record("cca", seed, 0.5, 0.4))
    text = report(tmp_path)
    assert "0.5000 (deterministic)" in text and "± 0.0000" not in text


def test_records_of_different_configurations_are_never_averaged_into_one_row(tmp_path):
    # seeds 0 and 1 trained at 41 epochs, then `epochs` was edited and seed 2 trained at 40
    for seed, epochs, value in ((0, 41, 0.9), (1, 41, 0.8), (2, 40, 0.1)):
        _write(tmp_path, _record("pgnn_con", seed, value, value, spec_method="pgnn_con",
                                 params={"epochs": epochs, "D": 16}, split={"val": 0.1, "seed": 0}))
    table = summarise(records_frame(iter_records(tmp_path)))
    rows = dict(zip(table["method"], zip(table["seeds"], table["map_i2t_mean"])))
    assert rows == {"pgnn_con [epochs=41]": (2, pytest.approx(0.85)), "pgnn_con [epochs=40]": (1, pytest.approx(0.1))}
    text = report(tmp_path)
    assert "2 configurations (differing in epochs)" in text and "never averaged" in text


def test_split_per_seed_records_are_one_configuration(tmp_path):
    for seed in (0, 1):
        _write(tmp_path, _record("cca", seed, 0.5 + seed / 10, 0.5, spec_method="cca", params={"dim": 4},
                                 split={"val": 0.1, "seed": seed}))
    table = summarise(records_frame(iter_records(tmp_path)))
    assert table["method"].tolist() == ["cca"] and table["seeds"].tolist() == [2]


def test_an_edited_method_source_is_a_different_configuration(tmp_path):
    _write(tmp_path, _record("cca", 0, 0.5, 0.5, spec_method="cca", code_version="aaa"))
    _write(tmp_path, _record("cca", 1, 0.7, 0.7, spec_method="cca", code_version="bbb"))
    table = summarise(records_frame(iter_records(tmp_path)))
    assert sorted(table["method"]) == ["cca [code=aaa]", "cca [code=bbb]"]


def test_the_newest_record_wins_for_a_repeated_dataset_method_and_seed(tmp_path):
    _write(tmp_path, _record("cca", 0, 0.90, 0.90, finished="2026-01-02T00:00:00"))
    _write(tmp_path, _record("cca", 0, 0.10, 0.10, finished="2026-01-01T00:00:00"))
    _write(tmp_path, _record("cca", 1, 0.70, 0.70, finished="2026-01-01T00:00:00"))
    table = summarise(records_frame(iter_records(tmp_path)))
    assert table["seeds"].tolist() == [2]
    assert table["map_i2t_mean"].tolist() == [pytest.approx(0.80)]


def test_failed_records_are_left_out(tmp_path):
    _write(tmp_path, _record("cca", 0, 0.5, 0.5))
    _write(tmp_path, _record("cca", 1, 0.0, 0.0, status="failed"))
    text = report(tmp_path, layout="long")
    assert text.count("| synthetic") == 1 and text.rstrip().endswith("seed 1:")
    assert "failed: synthetic | cca | seed 1" in text  # listed under the table instead


def test_markdown_puts_the_best_mean_of_each_column_in_bold(results):
    rows = {line.split("|")[2].strip(): line.split("|")[3:6] for line in report(results, layout="long").splitlines()
            if line.startswith("| synthetic")}
    cca, lr = rows["cca"], rows["label_regression"]
    assert lr[0].strip().startswith("**") and not cca[0].strip().startswith("**")  # I→T: label regression
    assert cca[1].strip().startswith("**") and not lr[1].strip().startswith("**")  # T→I: cca
    assert sum(cell.count("**") for cell in cca + lr) == 2 * 3


def test_best_is_chosen_per_dataset(tmp_path):
    _write(tmp_path, _record("cca", 0, 0.2, 0.2, dataset="a"))
    _write(tmp_path, _record("lr", 0, 0.1, 0.1, dataset="a"))
    _write(tmp_path, _record("cca", 0, 0.3, 0.3, dataset="b"))
    _write(tmp_path, _record("lr", 0, 0.4, 0.4, dataset="b"))
    bold = [line.split("|")[1:3] for line in report(tmp_path, layout="long").splitlines() if "**" in line]
    assert [[c.strip() for c in cells] for cells in bold] == [["a", "cca"], ["b", "lr"]]


def test_latex_escapes_underscores_and_bolds_with_textbf(results):
    text = report(results, fmt="latex")
    assert r"label\_regression" in text
    assert "label_regression" not in text
    assert r"\textbf{" in text and r"\begin{tabular}" in text and r"\end{tabular}" in text


def test_csv_has_one_row_per_method(results):
    lines = report(results, fmt="csv").strip().splitlines()
    assert lines[0].startswith("sweep,dataset,method,seeds,map_i2t_mean")
    assert len(lines) == 3


def test_each_sweep_gets_its_own_table_and_a_sweep_can_be_selected(tmp_path):
    _write(tmp_path, _record("cca", 0, 0.5, 0.5, sweep="one"))
    _write(tmp_path, _record("cca", 0, 0.6, 0.6, sweep="two"))
    both = report(tmp_path)
    assert "### one" in both and "### two" in both
    only = report(tmp_path, ["two"])
    assert "### one" not in only and "0.6000" in only


def test_report_without_records_is_an_error_saying_what_to_do(tmp_path):
    with pytest.raises(BenchError, match="no finished runs found .*run `bench run SWEEP.yaml` first"):
        report(tmp_path)


def test_an_unknown_format_is_an_error(results):
    with pytest.raises(BenchError, match="unknown report format 'rst'"):
        report(results, fmt="rst")


def test_the_report_says_when_the_seeds_of_a_row_ran_with_different_thread_counts(tmp_path):
    for seed, threads in ((0, 1), (1, 2), (2, 2)):
        rec = _record("cca", seed, 0.5 + seed / 100, 0.4)
        rec["environment"] = {"torch_threads": threads}
        _write(tmp_path, rec)
        same = _record("label_regression", seed, 0.6, 0.4)
        same["environment"] = {"torch_threads": 2}
        _write(tmp_path, same)
    text = report(tmp_path)
    note = next(line for line in text.splitlines() if "different torch thread counts" in line)
    assert "cca on synthetic (1, 2 threads)" in note and "label_regression" not in note


def test_records_whose_metrics_are_nan_are_reported_as_such_not_as_missing(tmp_path):
    for seed in range(2):
        _write(tmp_path, _record("cca", seed, float("nan"), float("nan")))
    text = report(tmp_path)
    assert "no finished runs" not in text and "no record holds" not in text
    assert "NaN mAP in the record of synthetic | cca | seed 0" in text
    assert "| cca " in text and "–" in text
