"""Records are read through one reader with one schema (issue 20, classes 2 and 5): a record whose
fields have the wrong types, or that is not a regular file, a huge file or too deeply nested, is
skipped with a line naming it and why; nothing hangs, nothing tracebacks, the other records are
reported. A record with NaN metrics is a valid record (the run produced them)."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench import records
from bench.cli import main
from bench.records import load_record, record_problem

pytestmark = pytest.mark.usefixtures("deadline")

SPEC = {"sweep": "s", "dataset": "synthetic", "dataset_label": "synthetic", "method": "cca", "method_label": "cca",
        "family": "cca", "seed": 0, "params": {"dim": 4}, "dataset_params": {"n": 240},
        "split": {"val": 0.1, "test": 0.2, "seed": 0, "retrieval": "test"}, "missing": None,
        "missing_policy": "drop", "optional": False, "code_version": "x", "test_selected": False}
GOOD = {"record_version": 1, "key": "good0", "status": "ok", "spec": SPEC, "finished": "2026-01-01T00:00:00+00:00",
        "position": 0, "reason": None,
        "metrics": {"map_i2t": 0.5, "map_t2i": 0.6, "map_avg": 0.55, "p@10_i2t": 0.5, "p@10_t2i": 0.5,
                    "pr_i2t": {"precision": [1.0, 0.5], "recall": [0.5, 1.0]},
                    "pr_t2i": {"precision": [1.0, 0.5], "recall": [0.5, 1.0]}, "undefined": {}},
        "history": [{"step": 1, "val_map": 0.4, "loss": 2.0}, {"step": 2, "val_map": 0.5, "loss": 1.0}],
        "timings": {"fit_s": 1.0, "total_s": 2.0}, "memory": {"peak_rss_mb": 100.0}, "cost": {"parameters": None},
        "artifacts": {"label_adjacency": {"shape": [2, 2], "data": [[1.0, 0.5], [0.5, 1.0]],
                                          "axis_labels": ["a", "b"]}}}


def _broken(path: str, value) -> dict:
    rec = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = rec
    for key in parents:
        target = target[key]
    target[last] = value
    rec["key"] = "bad-" + path.replace(".", "-")
    return rec


WRONG_TYPES = {  # field: a value of the wrong type, as an editor, a foreign tool or a bug could leave
    "timings": [1.0, 2.0],
    "test_selected": True,
    "metrics.pr_i2t": 3,
    "spec.split": "val=0.1",
    "history": [{"step": 1, "val_map": "high"}],
    "memory": [100],
    "cost": "cheap",
    "artifacts": {"label_adjacency": {"data": "matrix"}},
    "metrics.p@10_i2t": "0.5",
    "metrics.undefined": ["K too large"],
    "spec.params": [4],
    "position": "first",
}


def _results(tmp_path: Path, *records: dict) -> Path:
    runs = tmp_path / "results" / "s" / "runs"
    runs.mkdir(parents=True)
    for rec in records:
        (runs / f"{rec['key']}.json").write_text(json.dumps(rec))
    return tmp_path / "results"


def test_the_reference_record_is_valid():
    assert record_problem(GOOD) is None


@pytest.mark.parametrize("field", list(WRONG_TYPES))
def test_a_field_of_the_wrong_type_makes_a_record_unusable_naming_the_field(field):
    problem = record_problem(_broken(field, WRONG_TYPES[field]))
    assert problem is not None and field.split(".")[-1] in problem, problem


@pytest.mark.parametrize("field", list(WRONG_TYPES))
def test_report_skips_a_record_of_the_wrong_shape_with_one_line_and_reports_the_rest(tmp_path, field):
    results = _results(tmp_path, GOOD, _broken(field, WRONG_TYPES[field]))
    res = CliRunner().invoke(main, ["report", "--results", str(results), "--figures", str(tmp_path / "figs")])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 0, res.output[-2000:]
    assert "Traceback" not in res.output
    notes = [line for line in res.stderr.splitlines() if "skipped" in line]
    assert len(notes) == 1 and "bad-" in notes[0], res.stderr
    assert "0.5000" in res.stdout  # the good record is in the table


def test_nan_metrics_are_a_valid_record_not_an_unusable_one():
    rec = _broken("metrics.map_i2t", math.nan)
    assert record_problem(rec) is None
    assert record_problem(_broken("metrics.map_avg", math.inf)) is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_record_that_is_a_fifo_is_skipped_without_blocking(tmp_path):
    results = _results(tmp_path, GOOD)
    os.mkfifo(results / "s" / "runs" / "fifo.json")
    assert load_record(results / "s" / "runs" / "fifo.json") == (None, "is not a regular file (a pipe or device?); "
                                                                       "pass a record")
    res = CliRunner().invoke(main, ["report", "--results", str(results)])
    assert res.exit_code == 0 and "fifo.json" in res.stderr, res.output


def test_a_record_linked_to_a_device_is_skipped_without_reading_it(tmp_path):
    results = _results(tmp_path, GOOD)
    (results / "s" / "runs" / "zero.json").symlink_to("/dev/zero")
    rec, why = load_record(results / "s" / "runs" / "zero.json")
    assert rec is None and "not a regular file" in why


def test_a_deeply_nested_record_is_skipped(tmp_path):
    results = _results(tmp_path, GOOD)
    (results / "s" / "runs" / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    res = CliRunner().invoke(main, ["report", "--results", str(results)])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 0 and "deep.json" in res.stderr and "nests too deeply" in res.stderr, res.output


def test_an_oversized_record_is_skipped_without_being_read(tmp_path):
    results = _results(tmp_path, GOOD)
    with open(results / "s" / "runs" / "huge.json", "wb") as fh:
        fh.truncate(getattr(records, "MAX_RECORD_BYTES", 256 * 2**20) + 1)  # sparse: no disk used
    rec, why = load_record(results / "s" / "runs" / "huge.json")
    assert rec is None and "too large" in why


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_dry_run_over_a_fifo_record_treats_the_run_as_not_done(tmp_path):
    from conftest import TINY_SYNTHETIC, write_sweep

    from bench.sweep import load_sweep

    path = write_sweep(tmp_path, f"""
        name: s
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [cca]
    """)
    runs = tmp_path / "results" / "s" / "runs"
    runs.mkdir(parents=True)
    os.mkfifo(runs / f"{load_sweep(path).specs[0].key}.json")
    res = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "results"), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("todo ")
