"""Valid inputs of the features checked in issue 20 that failed, and the ones the new checks must keep
accepting: a byte-order mark in a params_from file, `~` in sweep paths, a number as a method label,
a running Dask scheduler named with or without tcp://, a deep results folder for local workers, and
`bench ui` stopped with Ctrl-C and started again at once on the same port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_SYNTHETIC, write_sweep

from bench.sweep import load_sweep

pytestmark = pytest.mark.usefixtures("deadline")


def _sweep(tmp_path: Path, methods: str) -> Path:
    return write_sweep(tmp_path, f"""
        name: valid
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: {methods}
    """)


def test_a_params_from_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    best = tmp_path / "best.json"
    best.write_bytes(b'\xef\xbb\xbf{"method": "cca", "params": {"dim": 8}}')  # as Windows editors save UTF-8
    sweep = load_sweep(_sweep(tmp_path, f"[{{name: cca, params_from: {best}}}]"))
    assert sweep.specs[0].params["dim"] == 8


def test_a_tilde_in_params_from_and_plugins_means_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "best.json").write_text('{"method": "cca", "params": {"dim": 6}}')
    (tmp_path / "plug" / "methods").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    path = write_sweep(tmp_path / "elsewhere", """
        name: tilde
        plugins: [~/plug]
        datasets: [{name: synthetic, params: {n: 240, image_dim: 16, text_dim: 12, num_labels: 6, groups: 2}}]
        methods: [{name: cca, params_from: ~/best.json}]
    """)
    sweep = load_sweep(path)
    assert sweep.specs[0].params["dim"] == 6 and sweep.plugins == [(tmp_path / "plug").resolve()]


def test_a_number_is_a_method_label(tmp_path):
    sweep = load_sweep(_sweep(tmp_path, "[{name: cca, label: 0.1}]"))
    assert sweep.specs[0].method_label == "0.1"


def test_a_running_scheduler_passes_the_address_check_with_or_without_tcp(tmp_path):
    from distributed import LocalCluster

    from bench.addresses import check_scheduler

    with LocalCluster(n_workers=0, processes=True, scheduler_port=0, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        check_scheduler(address)
        check_scheduler(address.removeprefix("tcp://"))
        check_scheduler(address.replace("127.0.0.1", "localhost"))


@pytest.mark.slow
def test_local_workers_run_under_a_results_folder_too_deep_for_a_plain_socket_path(tmp_path):
    results = tmp_path / ("d" * 90) / ("e" * 90)  # <results>/cache/tmp/pymp-*/listener-* > 107 bytes
    out = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "run",
                          str(_sweep(tmp_path, "[cca]")), "--results", str(results), "--workers", "1", "--no-mlflow"],
                         cwd="/", capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not list((results / "cache" / "tmp").iterdir())  # the fork server's folder removed at exit


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve_until_ready(results: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "from bench.cli import main; main()", "ui", "--results",
                             str(results), "--port", str(port), "--wait", "150"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 170
    for line in proc.stdout:
        if "MLflow UI ready" in line or time.monotonic() > deadline:
            return proc
    return proc


@pytest.mark.slow  # two MLflow server starts: 20-100 s depending on load
def test_ui_stopped_with_ctrl_c_leaves_no_traceback_nor_process_and_restarts_on_the_same_port(tmp_path):
    from bench.store import prepare_store

    results = tmp_path / "results"
    results.mkdir()
    prepare_store(f"sqlite:///{results / 'mlflow.db'}", results, echo=lambda line: None)
    port = _free_port()
    for attempt in range(2):  # the second start meets the first server's socket in TIME_WAIT
        proc = _serve_until_ready(results, port)
        try:
            assert proc.poll() is None, f"attempt {attempt}: the UI did not start"
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to bench
            rest = proc.communicate(timeout=60)[0]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert "Traceback" not in rest, rest[-3000:]
        assert proc.returncode == 0, rest[-3000:]
        assert "INFO" not in rest and "Registry store" not in rest  # the server's chatter: in ui.log only
        with pytest.raises(ProcessLookupError):  # nothing of bench's process group is left
            os.killpg(proc.pid, 0)
        with pytest.raises(ConnectionRefusedError):  # nor the server (its own session): nobody listens
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert "Uvicorn running" in (results / "ui.log").read_text()
