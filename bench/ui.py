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

import json
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

from bench.errors import BenchError
from bench.store import default_uri

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


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BenchError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port") from None


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


def _wait_until_up(proc: subprocess.Popen, base: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        if proc.poll() is not None:
            raise BenchError(f"the MLflow server exited with code {proc.returncode} before answering; "
                             f"its messages are above")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"the MLflow server did not answer on {base} within {wait_s:.0f} s; "
                             "raise --wait on a loaded machine")
        time.sleep(0.5)


def serve(req: UiRequest, echo: Callable[[str], None], warn: Callable[[str], None]) -> int:
    """Serve the UI until Ctrl-C (or the server exits); returns the exit code. The server never outlives us."""
    uri = req.tracking_uri or default_uri(req.results)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise BenchError(f"no MLflow store at {uri}; run a sweep first or pass --tracking-uri")
    _check_port(req.host, req.port)
    views = _views(uri, req.results)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", req.host,
           "--port", str(req.port), "--workers", "1"]
    proc = subprocess.Popen(cmd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # so `finally` stops the server
    shown = "127.0.0.1" if req.host in ("0.0.0.0", "::") else (f"[{req.host}]" if ":" in req.host else req.host)
    base = f"http://{shown}:{req.port}"
    try:
        _wait_until_up(proc, base, req.wait_s)
        echo(f"MLflow UI ready on {base} (Ctrl-C stops it)")
        for name, exp_id, key in views:
            echo(f"  {name}: {base}/#/experiments/{exp_id}/runs?viewStateShareKey={key}")
        if req.host in ("0.0.0.0", "::"):
            warn("  listening on every interface: anyone who reaches this port sees the runs")
        sys.stdout.flush()
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
