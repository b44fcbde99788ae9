"""MLflow tracking: an experiment per sweep, a parent run per invocation, a child run per spec.

The embedded default store is `sqlite:///<results>/mlflow.db` with artifacts under
`<results>/mlartifacts`; any tracking URI (e.g. a team's MLflow server) can be given instead.
Plugins never see this module: the runner forwards the fit context's logs here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError


def default_uri(results: Path) -> str:
    """The embedded default tracking URI for a results folder."""
    return f"sqlite:///{Path(results).resolve() / 'mlflow.db'}"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class NullTracker:
    """Tracking switched off: every call is a no-op."""

    enabled = False

    def start_parent(self, name: str, tags: dict[str, str]) -> None:  # noqa: D102
        pass

    def end_parent(self, status: str) -> None:  # noqa: D102
        pass

    def start_child(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str | None:  # noqa: D102
        return None

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:  # noqa: D102
        pass

    def log_artifact(self, run_id: str | None, path: Path, subdir: str | None = None) -> None:  # noqa: D102
        pass

    def end_child(self, run_id: str | None, status: str) -> None:  # noqa: D102
        pass


class MlflowTracker(NullTracker):
    """Logs to MLflow through `MlflowClient` (no global active-run state)."""

    enabled = True

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None) -> None:
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # after the import, which configures mlflow's logger
            logging.getLogger(name).setLevel(logging.WARNING)

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        try:
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                location = artifact_root.resolve().as_uri() + f"/{experiment}" if artifact_root else None
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
            else:
                self.experiment_id = exp.experiment_id
        except Exception as exc:
            raise BenchError(f"MLflow tracking at {uri} is unusable: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}; pass --no-mlflow or "
                             "another --tracking-uri") from None
        self.parent_id: str | None = None

    def close_stale(self) -> int:
        """Mark runs left RUNNING by a killed invocation of this sweep as KILLED; returns how many."""
        stale = self.client.search_runs([self.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                        max_results=1000)
        for run in stale:
            self.client.set_terminated(run.info.run_id, "KILLED")
        return len(stale)

    def start_parent(self, name: str, tags: dict[str, str]) -> None:
        """Open the parent run of this invocation."""
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.parent_id = run.info.run_id

    def end_parent(self, status: str) -> None:
        """Close the parent run."""
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status)

    def start_child(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        """Open a child run with flattened params and tags; returns its run id."""
        from mlflow.entities import Param

        all_tags = dict(tags)
        if self.parent_id:
            all_tags["mlflow.parentRunId"] = self.parent_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        items = [Param(k, str(v)[:6000]) for k, v in sorted(flatten(params).items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run.info.run_id, params=items[i:i + 100])
        return run.info.run_id

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:
        """Log scalar metrics (at `step` when given)."""
        from mlflow.entities import Metric

        if run_id is None or not metrics:
            return
        ts = int(time.time() * 1000)
        items = [Metric(_metric_key(k), float(v), ts, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i:i + 500])

    def log_artifact(self, run_id: str | None, path: Path, subdir: str | None = None) -> None:
        """Attach a file to a run."""
        if run_id is not None:
            self.client.log_artifact(run_id, str(path), artifact_path=subdir)

    def end_child(self, run_id: str | None, status: str) -> None:
        """Close a child run as FINISHED or FAILED."""
        if run_id is not None:
            self.client.set_terminated(run_id, status)


def _metric_key(key: str) -> str:
    """MLflow metric names allow [\\w.\\-/ :]; '@' (as in p@100) becomes '_at_'."""
    return key.replace("@", "_at_")
