"""`bench ui`: an MLflow server with one worker on 127.0.0.1, a ready link per sweep to its runs
grouped by method with the test metrics as columns; runs read back through the server by tag."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import TINY_SYNTHETIC, write_sweep

from bench.invocation import execute_sweep
from bench.store import default_uri
from bench.sweep import load_sweep
from bench.tracking import MlflowTracker
from bench.ui import SHARED_VIEW_KEY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui")
    sweep = load_sweep(write_sweep(folder, f"""
        name: uisweep
        seeds: [0, 1]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: cca, params: {{dim: 4}}}}, label_regression]
    """))
    results = folder / "results"
    tracker = MlflowTracker(default_uri(results), sweep.name, results / "mlartifacts")
    execute_sweep(sweep, results, tracker=tracker, echo=lambda line: None)
    return results


@pytest.mark.slow  # an MLflow server starts in 10-50 s depending on load; CI runs it (no deselection)
def test_ui_serves_the_runs_and_prints_a_grouped_link_per_sweep(finished):
    from mlflow.tracking import MlflowClient

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from bench.cli import main; main()", "ui", "--results",
                             str(finished), "--host", "127.0.0.1", "--port", str(port), "--wait", "150"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "uisweep: " in line:
                break
        link = next((line for line in lines if "uisweep: " in line), None)
        assert link is not None, "".join(lines)[-3000:]
        assert any(f"MLflow UI ready on http://127.0.0.1:{port}" in line for line in lines)
        m = re.search(rf"http://127\.0\.0\.1:{port}/#/experiments/(\w+)/runs\?viewStateShareKey="
                      rf"{SHARED_VIEW_KEY}", link)
        assert m, link
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        runs = client.search_runs([m.group(1)], filter_string="tags.method = 'cca'")
        assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1"]
        assert all(r.info.status == "FINISHED" and "test/map_avg" in r.data.metrics for r in runs)
        view = json.loads(client.get_experiment(m.group(1)).tags[f"mlflow.sharedViewState.{SHARED_VIEW_KEY}"])
        assert [k["groupByData"] for k in view["groupBy"]["groupByKeys"]] == ["config", "dataset"]
        assert "FINISHED" in view["searchFilter"]
        assert "metrics.`test/map_avg`" in view["selectedColumns"]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_ui_without_a_store_is_a_one_line_error(tmp_path):
    from click.testing import CliRunner

    from bench.cli import main

    out = CliRunner().invoke(main, ["ui", "--results", str(tmp_path)])
    assert out.exit_code == 2 and "no MLflow store" in out.output and not (tmp_path / "mlflow.db").exists()


def test_ui_refuses_a_port_in_use(finished):
    from click.testing import CliRunner

    from bench.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = CliRunner().invoke(main, ["ui", "--results", str(finished), "--port", str(port)])
    assert out.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in out.output
