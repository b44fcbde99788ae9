"""The runner: resume, --force, failures recorded and retried, records with the documented fields."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import TINY_SYNTHETIC, Projection, registered, write_sweep

from bench.invocation import execute_sweep
from bench.params import spec
from bench.records import iter_records, read_record, record_path, runs_dir, write_record
from bench.sweep import load_sweep


def _sweep_file(tmp_path, methods="[coretest_counting]", seeds="[0, 1]", name="s"):
    return write_sweep(tmp_path, f"""
        name: {name}
        seeds: {seeds}
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: {methods}
    """)


def _run(path, results, force=False):
    sweep = load_sweep(path)
    return sweep, execute_sweep(sweep, results, force=force, echo=lambda line: None)


def _records(results, sweep="s"):
    return {p.stem: json.loads(p.read_text()) for p in runs_dir(results, sweep).glob("[!.]*.json")}


def test_a_second_run_of_a_finished_sweep_trains_nothing_and_exits_zero(tmp_path, counting):
    path, results = _sweep_file(tmp_path), tmp_path / "results"
    _, first = _run(path, results)
    assert (first.ok, first.failed, len(counting.fits)) == (2, 0, 2)
    before = {k: r["finished"] for k, r in _records(results).items()}
    _, second = _run(path, results)
    assert len(counting.fits) == 2
    assert (second.ok, second.failed, second.done_before, second.exit_code) == (0, 0, 2, 0)
    assert {k: r["finished"] for k, r in _records(results).items()} == before


def test_force_reruns_finished_runs(tmp_path, counting):
    path, results = _sweep_file(tmp_path), tmp_path / "results"
    _run(path, results)
    _, again = _run(path, results, force=True)
    assert again.ok == 2
    assert sorted(seed for seed, _ in counting.fits) == [0, 0, 1, 1]
    assert len(_records(results)) == 2  # rewritten in place, not duplicated


def test_changing_a_parameter_runs_only_the_new_specs(tmp_path, counting):
    results = tmp_path / "results"
    _run(_sweep_file(tmp_path, methods="[{name: coretest_counting, grid: {dim: [2]}}]"), results)
    _, summary = _run(_sweep_file(tmp_path, methods="[{name: coretest_counting, grid: {dim: [2, 3]}}]"), results)
    assert (summary.ok, summary.done_before) == (2, 2)
    assert [p["dim"] for _, p in counting.fits] == [2, 2, 3, 3]


def test_a_run_that_raises_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path, failing, counting):
    path, results = _sweep_file(tmp_path, methods="[coretest_failing, coretest_counting]"), tmp_path / "results"
    sweep, summary = _run(path, results)
    assert (summary.ok, summary.failed, summary.exit_code) == (3, 1, 1)
    assert len(counting.fits) == 2  # the runs after the failure still ran
    by_run = {(s.method, s.seed): read_record(record_path(results, "s", s.key)) for s in sweep.specs}
    bad = by_run[("coretest_failing", 1)]
    assert bad["status"] == "failed"
    assert bad["reason"] == "ValueError: planted failure for seed 1"
    assert "planted failure" in bad["traceback"]
    assert "metrics" not in bad
    assert all(r["status"] == "ok" for k, r in by_run.items() if k != ("coretest_failing", 1))


def test_a_rerun_retries_only_the_failed_run(tmp_path, failing):
    path, results = _sweep_file(tmp_path, methods="[coretest_failing]"), tmp_path / "results"
    sweep, _ = _run(path, results)
    failing.fail_seeds = set()
    _, summary = _run(path, results)
    assert failing.attempts == [0, 1, 1]
    assert (summary.ok, summary.failed, summary.done_before, summary.exit_code) == (1, 0, 1, 0)
    assert all(read_record(record_path(results, "s", s.key))["status"] == "ok" for s in sweep.specs)


def test_a_record_has_the_documented_fields(tmp_path, counting):
    path, results = _sweep_file(tmp_path, seeds="[3]"), tmp_path / "results"
    sweep, _ = _run(path, results)
    (spec_,) = sweep.specs
    file = record_path(results, "s", spec_.key)
    rec = json.loads(file.read_text())  # plain, valid JSON
    assert file.stem == rec["key"] == spec_.key
    assert rec["status"] == "ok" and rec["reason"] is None
    assert rec["spec"]["method"] == "coretest_counting" and rec["spec"]["seed"] == 3
    assert rec["spec"]["params"] == {"dim": 4, "epochs": 2, "lr": 0.01}
    assert {"map_i2t", "map_t2i", "map_avg"} <= set(rec["metrics"])
    assert rec["metrics"]["map_avg"] == pytest.approx((rec["metrics"]["map_i2t"] + rec["metrics"]["map_t2i"]) / 2)
    assert isinstance(rec["history"], list)
    assert {"fit_s", "eval_s", "total_s"} <= set(rec["timings"])
    assert {"python", "torch", "numpy", "device", "git_commit"} <= set(rec["environment"])
    assert rec["memory"]["peak_rss_mb"] > 0
    assert rec["data"]["items"] == 240 and len(rec["data"]["fingerprint"]) == 16
    assert rec["n_train"] + rec["n_val"] + rec["n_test"] == 240
    assert rec["started"] <= rec["finished"]


def test_every_method_and_seed_sees_the_same_persisted_split(tmp_path, counting):
    path = _sweep_file(tmp_path, methods="[coretest_counting, cca, label_regression]", seeds="[0, 1]")
    results = tmp_path / "results"
    _run(path, results)
    assert len(list((results / "cache" / "splits").glob("*.npz"))) == 1
    sizes = {(r["n_train"], r["n_val"], r["n_test"]) for r in _records(results).values()}
    assert sizes == {(173, 19, 48)}  # 240 rows: test 20% = 48, val 10% of the remaining 192 = 19


def test_incomplete_training_rows_are_dropped_for_methods_without_missing_support(tmp_path, counting):
    path = write_sweep(tmp_path, f"""
        name: s
        datasets:
          - name: synthetic
            params: {TINY_SYNTHETIC}
            missing: {{paired: 0.25, image_only: 0.5, text_only: 0.25}}
        methods: [coretest_counting, label_regression]
    """)
    results = tmp_path / "results"
    _run(path, results)
    n_train = {r["spec"]["method"]: r["n_train"] for r in _records(results).values()}
    assert n_train == {"coretest_counting": 43, "label_regression": 173}  # 25% of 173 training rows paired


def test_the_zero_policy_keeps_incomplete_rows_for_methods_without_missing_support(tmp_path, counting):
    path = write_sweep(tmp_path, f"""
        name: s
        datasets:
          - name: synthetic
            params: {TINY_SYNTHETIC}
            missing: {{paired: 0.25, image_only: 0.5, text_only: 0.25}}
            missing_policy: zero
        methods: [coretest_counting]
    """)
    results = tmp_path / "results"
    _run(path, results)
    assert [r["n_train"] for r in _records(results).values()] == [173]


@dataclass
class _InterruptParams:
    interrupt: bool = spec(False, help="raise KeyboardInterrupt in fit (off by default: harmless elsewhere)")


class Interrupted(Projection):
    """Raises KeyboardInterrupt in fit when asked, as Ctrl-C would."""

    name = "coretest_interrupted"
    description = "test-only: interrupted"
    Params = _InterruptParams

    def fit(self, train, val, ctx):
        if self.params.interrupt:
            raise KeyboardInterrupt
        self._project(train, ctx.seed)


def test_an_interrupted_run_leaves_no_record_and_stops_the_sweep(tmp_path, counting):
    path = _sweep_file(tmp_path, seeds="[0]",
                       methods="[{name: coretest_interrupted, params: {interrupt: true}}, coretest_counting]")
    results = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        _run(path, results)
    assert _records(results) == {}
    assert counting.fits == []


def test_a_half_written_record_counts_as_not_finished(tmp_path, counting):
    path, results = _sweep_file(tmp_path, seeds="[0]"), tmp_path / "results"
    sweep, _ = _run(path, results)
    file = record_path(results, "s", sweep.specs[0].key)
    file.write_text(file.read_text()[:100])
    assert read_record(file) is None
    _, summary = _run(path, results)
    assert summary.ok == 1 and len(counting.fits) == 2
    assert read_record(file)["status"] == "ok"


def test_a_record_is_written_atomically_without_leaving_temporary_files(tmp_path):
    path = tmp_path / "runs" / "abc.json"
    write_record(path, {"key": "abc", "status": "ok", "value": np.float32(0.5)})
    assert json.loads(path.read_text())["value"] == 0.5
    assert [p.name for p in path.parent.iterdir()] == ["abc.json"]


def test_a_leftover_temporary_file_is_not_read_as_a_record(tmp_path, counting):
    path, results = _sweep_file(tmp_path, seeds="[0]"), tmp_path / "results"
    sweep, _ = _run(path, results)
    file = record_path(results, "s", sweep.specs[0].key)
    (file.parent / ".tmp-k1ll3d.json").write_text(file.read_text())  # complete but never renamed
    assert len(iter_records(results, ["s"])) == 1


@pytest.fixture(scope="module", autouse=True)
def _test_plugins():
    """This module's test-only plugin, registered while its tests run."""
    with registered(Interrupted):
        yield
