"""`kill -9` in the middle of a sweep, then rerun: one finished record per run, stale MLflow runs KILLED.

The killed invocation is a real `bench run` process (with the embedded MLflow store); the rerun is the
same command invoked in this process, which loads the same plugin file so that run keys agree.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import FIXTURE_ROOT, TINY_SYNTHETIC, write_sweep

from bench.records import iter_records, runs_dir

pytestmark = pytest.mark.slow  # two `bench run` invocations with MLflow: about 10-20 s

SEEDS = [0, 1]
BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


def _load_fixture_plugin():
    """The fixture plugin folder, imported in this process as the killed process imports it
    (BENCH_PLUGIN_PATH): run keys hash the plugin's code, not its module name."""
    from bench.registry import load_root

    load_root(FIXTURE_ROOT)


def _finished(runs):
    return sorted(p for p in runs.glob("*.json") if not p.name.startswith("."))


@pytest.fixture(scope="module")
def killed_then_rerun(mlflow_results, tmp_path_factory):
    """Run a sweep of slow runs, SIGKILL it once its second run is fitting, then run it again."""
    from click.testing import CliRunner

    from bench.cli import main

    _load_fixture_plugin()
    folder = tmp_path_factory.mktemp("kill")
    path = write_sweep(folder, f"""
        name: killed
        seeds: {SEEDS}
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: fixture_sleepy, params: {{sleep_s: 1.0, started_marker: "{folder / 'started'}"}}}}]
    """)
    env = {**os.environ, "BENCH_PLUGIN_PATH": str(FIXTURE_ROOT)}
    args = ["run", str(path), "--results", str(mlflow_results)]
    runs = runs_dir(mlflow_results, "killed")
    log = folder / "killed-invocation.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*BENCH, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    second_started = folder / f"started.seed{SEEDS[1]}"
    while not second_started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the sweep ended before it could be killed:\n{log.read_text()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    after_kill = [json.loads(p.read_text()) for p in _finished(runs)]
    rerun = CliRunner().invoke(main, args)
    return {"after_kill": after_kill, "rerun": rerun, "runs": runs, "results": mlflow_results}


def test_the_kill_left_only_finished_records(killed_then_rerun):
    after = killed_then_rerun["after_kill"]
    assert len(after) == 1  # the first run finished; the second was killed while fitting
    assert all(r["status"] == "ok" for r in after)


def test_the_rerun_redoes_only_the_unfinished_runs(killed_then_rerun):
    rerun, done = killed_then_rerun["rerun"], len(killed_then_rerun["after_kill"])
    assert rerun.exit_code == 0, rerun.output
    assert f"{done} of {len(SEEDS)} runs already finished" in rerun.output
    assert f"{len(SEEDS) - done} ran now ({len(SEEDS) - done} ok, 0 failed)" in rerun.output


def test_after_the_rerun_every_run_has_exactly_one_parseable_record(killed_then_rerun):
    runs = killed_then_rerun["runs"]
    records = [json.loads(p.read_text()) for p in _finished(runs)]
    assert sorted(r["spec"]["seed"] for r in records) == SEEDS
    assert all(r["status"] == "ok" for r in records)
    assert all(p.stem == json.loads(p.read_text())["key"] for p in _finished(runs))
    assert not [p.name for p in runs.iterdir() if p.name.startswith(".tmp-")]
    assert len(iter_records(killed_then_rerun["results"], ["killed"])) == len(SEEDS)


def test_the_next_invocation_marks_the_killed_mlflow_runs_killed(killed_then_rerun):
    from mlflow.tracking import MlflowClient

    from bench.store import default_uri

    assert "as KILLED" in killed_then_rerun["rerun"].output
    client = MlflowClient(tracking_uri=default_uri(killed_then_rerun["results"]))
    exp = client.get_experiment_by_name("killed")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = sorted((r for r in runs if r.data.tags.get("bench.role") == "invocation"),
                     key=lambda r: r.info.start_time)
    assert [p.info.status for p in parents] == ["KILLED", "FINISHED"]
    killed_children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
                       and r.info.status == "KILLED"]
    assert len(killed_children) == 1  # the run in progress at the kill
    assert not [r for r in runs if r.info.status == "RUNNING"]
