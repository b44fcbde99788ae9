"""Crashes, concurrency and tracking failures (issue 12): kill -9 at chosen moments, two invocations
at once on a fresh results folder, a shared tracking store, a full disk, a truncated split cache.

Kills are exact: the killed `bench` process is a real subprocess in which one function is wrapped to
SIGKILL the process at the chosen moment (during store creation, right after a record is written,
between a record's temporary file and its rename, inside a tune trial).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURE_ROOT, TINY_SYNTHETIC, write_sweep

from bench.cli import main
from bench.records import iter_records, runs_dir

pytestmark = pytest.mark.slow

KILL_PREAMBLE = """
import os, signal, sys
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
"""


def bench_process(patch: str, args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `bench ARGS` in a fresh interpreter after executing `patch` (which may arrange a SIGKILL)."""
    code = KILL_PREAMBLE + patch + "\nfrom bench.cli import main\nmain(" + repr(args) + ")\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})})


def sweep_file(folder: Path, name: str = "hard", seeds: str = "[0, 1]", method: str = "cca") -> Path:
    return write_sweep(folder, f"""
        name: {name}
        seeds: {seeds}
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{method}]
    """, name=name)


def mlflow_runs(results: Path, experiment: str, uri: str | None = None) -> list:
    from mlflow.tracking import MlflowClient

    from bench.store import default_uri

    client = MlflowClient(tracking_uri=uri or default_uri(results))
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=500) if exp else []


def test_a_kill_during_store_creation_leaves_no_broken_store(tmp_path):
    results = tmp_path / "results"
    path = sweep_file(tmp_path)
    killed = bench_process("import bench.store as t\n"
                           "orig = t._create_store\n"
                           "def create(uri, results):\n    orig(uri, results)\n    die()\n"
                           "t._create_store = create\n", ["run", str(path), "--results", str(results)])
    assert killed.returncode == -signal.SIGKILL
    assert not (results / "mlflow.db").exists()  # the half-made store never took the real name
    assert list(results.glob(".tmp-mlflow.db-*"))  # the killed creation's temporary file
    rerun = CliRunner().invoke(main, ["run", str(path), "--results", str(results)])
    assert rerun.exit_code == 0, rerun.output
    assert not list(results.glob(".tmp-mlflow.db-*"))
    assert {r.info.status for r in mlflow_runs(results, "hard")} == {"FINISHED"}


def test_a_store_broken_by_an_older_version_is_an_error_that_says_what_to_do(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    con = sqlite3.connect(results / "mlflow.db")  # what a kill in the middle of MLflow's migrations leaves
    con.execute("create table experiments (experiment_id integer primary key, name text)")
    con.commit()
    con.close()
    res = CliRunner().invoke(main, ["run", str(sweep_file(tmp_path)), "--results", str(results)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "is broken" in res.stderr and "mv it to mlflow.db.broken" in res.stderr and "--no-mlflow" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_kill_right_after_a_record_is_written_is_reconciled_in_mlflow(tmp_path):
    results = tmp_path / "results"
    path = sweep_file(tmp_path, seeds="[0]")
    killed = bench_process("import bench.tracking as t\nt.SafeTracker.end_child = lambda *a, **k: die()\n",
                           ["run", str(path), "--results", str(results)])
    assert killed.returncode == -signal.SIGKILL
    [rec] = iter_records(results, ["hard"])
    assert rec["status"] == "ok"
    [child] = [r for r in mlflow_runs(results, "hard") if r.info.run_id == rec["mlflow_run_id"]]
    assert child.info.status == "RUNNING"
    rerun = CliRunner().invoke(main, ["run", str(path), "--results", str(results)])
    assert rerun.exit_code == 0 and "closed 1 MLflow run(s) from their records" in rerun.output
    [child] = [r for r in mlflow_runs(results, "hard") if r.info.run_id == rec["mlflow_run_id"]]
    assert child.info.status == "FINISHED"
    assert child.data.tags["bench.record"].endswith(f"{rec['key']}.json")
    assert child.data.metrics["test/map_i2t"] == pytest.approx(rec["metrics"]["map_i2t"])
    assert len(iter_records(results, ["hard"])) == 1  # nothing was redone or duplicated


def test_a_kill_mid_write_leaves_a_temporary_that_the_next_invocation_removes(tmp_path):
    results = tmp_path / "results"
    path = sweep_file(tmp_path, seeds="[0]")
    killed = bench_process("import bench.records as r\nreplace = r.os.replace\n"
                           "r.os.replace = lambda s, d: die() if '/runs/' in str(d) else replace(s, d)\n",
                           ["run", str(path), "--results", str(results), "--no-mlflow"])
    assert killed.returncode == -signal.SIGKILL
    runs = runs_dir(results, "hard")
    assert [p.name for p in runs.iterdir() if p.name.startswith(".tmp-")]
    assert iter_records(results, ["hard"]) == []  # a run killed mid-write is not finished
    rerun = CliRunner().invoke(main, ["run", str(path), "--results", str(results), "--no-mlflow"])
    assert rerun.exit_code == 0 and "removed 1 temporary file(s)" in rerun.output
    assert not [p.name for p in runs.iterdir() if p.name.startswith(".tmp-")]
    assert [r["status"] for r in iter_records(results, ["hard"])] == ["ok"]


def test_a_killed_tune_trial_is_failed_on_resume(tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    results = tmp_path / "results"
    path = write_sweep(tmp_path, f"""
        name: tunekill
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [label_regression]
    """)
    killed = bench_process("import bench.run as r\nr.execute = lambda *a, **k: die()\n",
                           ["tune", str(path), "--results", str(results), "--trials", "1"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    journal = results / "tunekill" / "tune" / "optuna.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    [summary] = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]
    rerun = CliRunner().invoke(main, ["tune", str(path), "--results", str(results), "--trials", "1"])
    assert rerun.exit_code == 0, rerun.output
    assert "marked 1 trial(s) of a killed `bench tune` as FAIL" in rerun.output
    study = optuna.load_study(study_name=summary.study_name, storage=JournalStorage(JournalFileBackend(str(journal))))
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]


def test_two_invocations_at_once_on_a_fresh_results_folder_both_succeed(tmp_path):
    results = tmp_path / "results"
    paths = [sweep_file(tmp_path, name=f"twin{i}", seeds="[0]") for i in range(2)]
    code = "from bench.cli import main; main()"
    procs = [subprocess.Popen([sys.executable, "-c", code, "run", str(p), "--results", str(results)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in paths]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("created the MLflow store" in out for out, _ in outs) == 1
    assert all("Traceback" not in err for _, err in outs)
    for i in range(2):
        assert [r.info.status for r in mlflow_runs(results, f"twin{i}") if "run_key" in r.data.tags] == ["FINISHED"]


def test_a_second_invocation_sharing_the_store_does_not_kill_the_first_ones_live_runs(tmp_path):
    store = tmp_path / "shared.db"
    uri = f"sqlite:///{store}"
    marker = tmp_path / "started"
    path = write_sweep(tmp_path, f"""
        name: shared
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: fixture_sleepy, params: {{sleep_s: 12.0, started_marker: "{marker}"}}}}]
    """)
    env = {**os.environ, "BENCH_PLUGIN_PATH": str(FIXTURE_ROOT)}
    first = subprocess.Popen([sys.executable, "-c", "from bench.cli import main; main()", "run", str(path),
                              "--results", str(tmp_path / "a"), "--tracking-uri", uri], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not Path(f"{marker}.seed0").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None
    from bench.store import open_tracker

    open_tracker(uri, tmp_path / "b", "shared")  # what a real second invocation does before it runs
    live = [r.info.status for r in mlflow_runs(tmp_path, "shared", uri)]
    assert first.poll() is None, "the first invocation ended before the check: inconclusive"
    assert "KILLED" not in live and "RUNNING" in live
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert {r.info.status for r in mlflow_runs(tmp_path, "shared", uri)} == {"FINISHED"}


def test_a_tracking_failure_never_fails_a_run(tmp_path, monkeypatch):
    from bench.tracking import MlflowTracker

    def broken(*args, **kwargs):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(MlflowTracker, "log_metrics", broken)
    monkeypatch.setattr(MlflowTracker, "log_artifact", broken)
    results = tmp_path / "results"
    res = CliRunner().invoke(main, ["run", str(sweep_file(tmp_path, seeds="[0]")), "--results", str(results)])
    assert res.exit_code == 0, res.output
    assert "warning: MLflow log_metrics failed" in res.output
    assert [r["status"] for r in iter_records(results, ["hard"])] == ["ok"]


def test_a_truncated_split_cache_is_recomputed(tmp_path):
    results = tmp_path / "results"
    path = sweep_file(tmp_path, seeds="[0]")
    assert CliRunner().invoke(main, ["run", str(path), "--results", str(results), "--no-mlflow"]).exit_code == 0
    [cache] = list((results / "cache" / "splits").glob("*.npz"))
    whole = cache.read_bytes()
    first = iter_records(results, ["hard"])[0]
    cache.write_bytes(whole[: len(whole) // 2])
    res = CliRunner().invoke(main, ["run", str(path), "--results", str(results), "--no-mlflow", "--force"])
    assert res.exit_code == 0, res.output
    assert cache.read_bytes() == whole  # recomputed: the same split
    again = iter_records(results, ["hard"])[0]
    assert again["metrics"]["map_i2t"] == first["metrics"]["map_i2t"]


def test_report_says_how_many_records_it_skipped_and_why(tmp_path):
    results = tmp_path / "results"
    path = sweep_file(tmp_path, seeds="[0]")
    assert CliRunner().invoke(main, ["run", str(path), "--results", str(results), "--no-mlflow"]).exit_code == 0
    runs = runs_dir(results, "hard")
    (runs / "aaaa.json").write_text(json.dumps({"status": "ok", "key": "aaaa", "spec": {"sweep": "hard"}}))
    (runs / "bbbb.json").write_text(json.dumps({"status": "ok", "key": 3, "spec": [], "metrics": "x"}))
    (runs / "cccc.json").write_text("{not json")
    res = CliRunner().invoke(main, ["report", "--results", str(results)])
    assert res.exit_code == 0 and "Traceback" not in res.output
    assert "skipped 3 unreadable record(s)" in res.stderr
    assert "synthetic" in res.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_one_line_exit_1_and_the_records_stay_intact(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        st = os.statvfs(mount)
        (mount / "filler").write_bytes(b"x" * (st.f_bavail * st.f_frsize - 160_000))  # leave ~160 KB free
        results = mount / "results"
        path = sweep_file(tmp_path, seeds=str(list(range(40))))
        res = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "run", str(path),
                              "--results", str(results), "--no-mlflow"], capture_output=True, text=True,
                             timeout=240)
        assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
        assert "Traceback" not in res.stderr
        assert res.stderr.strip().splitlines()[-1].startswith("error: disk full")
        assert len(res.stderr.strip().splitlines()) == 1
        records = [json.loads(p.read_text()) for p in runs_dir(results, "hard").glob("[!.]*.json")]
        assert records and all(r["status"] == "ok" for r in records)
        assert len(records) < 40
    finally:
        subprocess.run(["umount", str(mount)])
