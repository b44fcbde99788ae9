"""`bench ui`: the MLflow UI on one worker, with a shared view per sweep that groups runs by method.

The view (`grouped_view`) is MLflow's shared UI state of an experiment: FINISHED child runs only
(a run killed by Ctrl-C or a failed one never enters a mean), grouped by the `config` and `dataset`
tags (mean over seeds), the test mAP figures as columns, the best test Avg first. Open it with
`#/experiments/<id>/runs?viewStateShareKey=bench-by-method`.

A group is one configuration: the `config` tag is the label the report gives the run's row
(`cca [dim=8]`, naming what differs wherever a method has several configurations). Runs are
labelled when they start, against the sweep file they came from; before serving, `bench ui`
relabels every run that has a record under the results folder from all of the sweep's records,
exactly as `bench report` labels them, so a configuration added later separates earlier groups too.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.addresses import resolve
from bench.errors import BenchError
from bench.params import check_number, short
from bench.scratch import keep_scratch_inside, start_writing
from bench.store import check_uri, default_uri

SHARED_VIEW_KEY = "bench-by-method"  # the experiment's shared UI state made by `bench ui`


def grouped_view(client: Any, experiment_id: str) -> str:
    """Write the experiment's shared UI state `bench-by-method` (see the module docstring); returns its key."""
    shown = "tags.`bench.role` = 'run' and attributes.status = 'FINISHED'"
    runs = client.search_runs([experiment_id], filter_string=shown, max_results=1000)
    # the table orders metric columns by name; the test mAP figures (all, @k) keep it readable
    metrics = sorted({k for r in runs for k in r.data.metrics if k.startswith("test/map")})
    state = {
        "searchFilter": shown,
        "orderByKey": "metrics.`test/map_avg`", "orderByAsc": False,
        "selectedColumns": [f"metrics.`{k}`" for k in metrics] + ["tags.`dataset`", "tags.`seed`",
                                                                   "tags.`variant`"],
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "config"},
                                                                     {"mode": "tag", "groupByData": "dataset"}]},
        "runListHidden": False,
    }
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{SHARED_VIEW_KEY}", json.dumps(state))
    return SHARED_VIEW_KEY


@dataclass(frozen=True)
class UiRequest:
    """What `bench ui` was asked for."""

    results: Path
    host: str = "127.0.0.1"
    port: int = 5000
    tracking_uri: str | None = None
    wait_s: float = 120.0


def _check_host(host: str) -> None:
    """A non-empty host name or address that resolves (within seconds)."""
    if not isinstance(host, str) or not host.strip() or any(ord(c) < 32 for c in host):
        raise BenchError("--host: give an interface name or address (127.0.0.1, ::1, 0.0.0.0)")
    resolve(host, 0, f"--host {short(host)}")


def _check_port(host: str, port: int) -> None:
    """Something may listen on host:port: the same bind the server will make (SO_REUSEADDR, as uvicorn
    sets it: a port left in TIME_WAIT by the previous `bench ui` is free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise BenchError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port") from None
            raise BenchError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --host (an address "
                             "of this machine, e.g. 127.0.0.1)") from None


def check_store(uri: str) -> None:
    """The backend store `bench ui` serves: an existing sqlite store or a database server; a tracking
    server (http) has its own UI, and MLflow 3 refuses new file stores (`bench.store.check_uri`)."""
    if uri.split(":", 1)[0].lower() in ("http", "https"):
        raise BenchError(f"--tracking-uri {short(uri, 200)} is a tracking server: it serves its own UI, open it in a "
                         "browser; `bench ui` serves a store (sqlite:///..., postgresql://...)")
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not os.path.lexists(db):
            raise BenchError(f"no MLflow store at {uri}; run a sweep first or pass --tracking-uri")
    check_uri(uri)


def relabel(client: Any, experiment_id: str, results: Path, sweep: str) -> int:
    """Give every run of the experiment that has an ok record under `results/<sweep>/runs/` the
    configuration and dataset labels the report gives it (tags `config`, `dataset`, `config_id`, and
    its name); returns how many runs changed."""
    from bench.records import iter_records
    from bench.report_frame import records_frame

    records = iter_records(results, [sweep])
    frame = records_frame(records)
    if frame.empty:
        return 0
    run_ids = {r["key"]: r.get("mlflow_run_id") for r in records if r.get("mlflow_run_id")}
    runs = {r.info.run_id: r for r in client.search_runs([experiment_id], max_results=5000,
                                                         filter_string="tags.`bench.role` = 'run'")}
    changed = 0
    for row in frame.itertuples():
        run = runs.get(run_ids.get(row.key, ""))
        if run is None:
            continue
        tags = {"config": row.method, "dataset": row.dataset, "config_id": row.config}
        if any(run.data.tags.get(k) != v for k, v in tags.items()):
            for key, value in tags.items():
                client.set_tag(run.info.run_id, key, value)
            client.update_run(run.info.run_id, name=f"{row.method} · {row.dataset} · s{row.seed}")
            changed += 1
    return changed


def _views(uri: str, results: Path) -> list[tuple[str, str, str]]:
    """(experiment name, id, shared view key) of every experiment with runs, relabelled from the
    records under `results` first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    views = []
    for exp in client.search_experiments():
        if client.search_runs([exp.experiment_id], max_results=1):
            relabel(client, exp.experiment_id, results, exp.name)
            views.append((exp.name, exp.experiment_id, grouped_view(client, exp.experiment_id)))
    return views


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return short(lines[-1], 200) if lines else ""


def _wait_until_up(proc: subprocess.Popen, base: str, wait_s: float, log: Path) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        if proc.poll() is not None:
            raise BenchError(f"the MLflow server exited with code {proc.returncode} before answering: "
                             f"{_last_line(log) or 'no message'} (its output: {log})")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"the MLflow server did not answer on {base} within {wait_s:g} s (its output: {log}); "
                             "raise --wait on a loaded machine")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and every process it started (its own session): SIGINT, then SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def serve(req: UiRequest, echo: Callable[[str], None], warn: Callable[[str], None]) -> int:
    """Serve the UI until Ctrl-C (or the server exits); returns the exit code. Everything is checked
    before anything starts (host, port, store, --wait); the server's own output goes to
    `<results>/ui.log`, its scratch files under `<results>/cache` (bench.scratch), and it never
    outlives us (it runs in its own session, stopped as a group)."""
    check_number(req.wait_s, "--wait", integer=False, low=0.1, high=86400.0)
    _check_host(req.host)
    _check_port(req.host, req.port)
    uri = req.tracking_uri or default_uri(req.results)
    check_store(uri)
    keep_scratch_inside(req.results)
    start_writing()
    views = _views(uri, req.results)
    log = Path(req.results) / "ui.log"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", req.host,
           "--port", str(req.port), "--workers", "1"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # so `finally` stops the server
    shown = "127.0.0.1" if req.host in ("0.0.0.0", "::") else (f"[{req.host}]" if ":" in req.host else req.host)
    base = f"http://{shown}:{req.port}"
    try:
        _wait_until_up(proc, base, req.wait_s, log)
        echo(f"MLflow UI ready on {base} (Ctrl-C stops it; server output in {log})")
        for name, exp_id, key in views:
            echo(f"  {name}: {base}/#/experiments/{exp_id}/runs?viewStateShareKey={key}")
        if req.host in ("0.0.0.0", "::"):
            warn("  listening on every interface: anyone who reaches this port sees the runs")
        sys.stdout.flush()
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(proc)
