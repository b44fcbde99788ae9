"""MLflow tracking: an experiment per sweep, a parent run per invocation, a child run per spec.

`Tracker` is the interface the run path talks to; `MlflowTracker` implements it with
`MlflowClient` (no global active-run state), `NullTracker` is tracking switched off, and two
wrappers add what the run path needs around them: `SafeTracker` (a tracking failure never fails
a run: the record is the truth) and `RetryingTracker` (a worker retries a busy store). The
store's life cycle (creation, checks, reconciliation) is in `bench.store`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.environment import commit_tags
from bench.errors import BenchError
from bench.ownership import OWNER_TAG, owner_tag

HARNESS_PREFIX = "bench."  # harness parameters (seed, dataset, split, ...); method ones are plain


class Tracker(Protocol):
    """What the run path calls. Run ids are None when tracking is off (every call is then a no-op)."""

    enabled: bool
    parent_id: str | None

    def start_parent(self, name: str, tags: dict[str, str]) -> None: ...
    def end_parent(self, status: str) -> None: ...
    def start_child(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str | None: ...
    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, run_id: str | None, path: Path, subdir: str | None = None) -> None: ...
    def end_child(self, run_id: str | None, status: str) -> None: ...
    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None: ...
    def log_dataset(self, run_id: str | None, name: str, digest: str, source: str,
                    profile: dict[str, Any]) -> None: ...
    def log_parent_artifact(self, path: Path, subdir: str | None = None) -> None: ...
    def close_open_children(self, status: str) -> int: ...


# --- names: what a run, its tags, params and metrics are called in MLflow -------------------


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


@dataclass(frozen=True)
class RunLabels:
    """How a run is named where configurations meet: its configuration's label as the report writes
    it (`cca [dim=8]`: what differs from the sweep file's definition), its dataset's (`synthetic
    [n=500]`), and the configuration's id (the same for every seed of one configuration)."""

    config: str
    dataset: str
    config_id: str = ""


def run_name(spec: Any, labels: RunLabels | None = None) -> str:
    """What differs inside an experiment leads: `cca [dim=8] · synthetic · s0`."""
    config, dataset = (labels.config, labels.dataset) if labels else (spec.method_label, spec.dataset_label)
    return f"{config} · {dataset} · s{spec.seed}"


def child_tags(spec: Any, git_commit: str, labels: RunLabels | None = None) -> dict[str, str]:
    """Tags of a run: method, family, variant (`full` for the family's own model), dataset, seed, run
    key, configuration label and id (the grouped view groups by them), commit and whether the
    working tree had uncommitted changes."""
    labels = labels or RunLabels(spec.method_label, spec.dataset_label)
    tags = {"method": spec.method, "family": spec.family, "variant": spec.method.partition("/")[2] or "full",
            "dataset": labels.dataset, "seed": str(spec.seed), "run_key": spec.key,
            "method_label": spec.method_label, "config": labels.config, **commit_tags(git_commit),
            "bench.role": "run"}
    if labels.config_id:
        tags["config_id"] = labels.config_id
    return tags


def child_params(method_params: dict[str, Any], harness: dict[str, Any]) -> dict[str, Any]:
    """Method hyperparameters as plain params (`D`, `lr`, ...) so the compare view lines methods up;
    the harness's under `bench.` (`bench.seed`, `bench.split.val`, `bench.data.n`, ...)."""
    return {**flatten(method_params), **flatten(harness, HARNESS_PREFIX)}


def epoch_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Per-epoch values in sections: the validation mAP as `val/map`, losses as `train/<name>`."""
    return {("val/map" if k == "val_map" else k if "/" in k else f"train/{k}"): v for k, v in metrics.items()}


def section(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    """`{"map_i2t": x}` -> `{"test/map_i2t": x}`."""
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of a metrics dict (PR curves and bools left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def metric_key(key: str) -> str:
    """MLflow metric names allow [\\w.\\-/ :]; '@' (as in p@100) becomes '_at_'."""
    return key.replace("@", "_at_")


# --- trackers ----------------------------------------------------------------------------------


class NullTracker:
    """Tracking switched off: every call is a no-op."""

    enabled = False
    parent_id: str | None = None

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

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:  # noqa: D102
        pass

    def log_dataset(self, run_id: str | None, name: str, digest: str, source: str,
                    profile: dict[str, Any]) -> None:  # noqa: D102
        pass

    def log_parent_artifact(self, path: Path, subdir: str | None = None) -> None:  # noqa: D102
        pass

    def close_open_children(self, status: str) -> int:  # noqa: D102
        return 0


def quiet_mlflow_loggers() -> None:
    """MLflow's and alembic's INFO chatter off (after mlflow is imported, which configures them)."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class MlflowTracker(NullTracker):
    """Logs to MLflow through `MlflowClient`. `parent_id` joins an invocation's parent run opened
    elsewhere (a Dask worker logs its child runs under the client's parent)."""

    enabled = True

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None,
                 parent_id: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        quiet_mlflow_loggers()
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
        self.parent_id = parent_id

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
        items = [Metric(metric_key(k), float(v), ts, step or 0) for k, v in metrics.items()]
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

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:
        """Set tags on a run (e.g. a failed run's `failure_reason`)."""
        from mlflow.entities import RunTag

        if run_id is not None and tags:
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_dataset(self, run_id: str | None, name: str, digest: str, source: str, profile: dict[str, Any]) -> None:
        """Record the run's input (`mlflow.log_input`): dataset name, a digest of data + split, a profile."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        if run_id is None:
            return
        dataset = Dataset(name=name, digest=digest[:36], source_type="bench", source=json.dumps({"uri": source}),
                          profile=json.dumps(profile, default=str))
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context",
                                                                                      "train")])])

    def describe_experiment(self, description: str) -> None:
        """The experiment's description (shown in the UI) is the sweep's `description`."""
        if description:
            self.client.set_experiment_tag(self.experiment_id, "mlflow.note.content", description)
        self.client.set_experiment_tag(self.experiment_id, "mlflow.experimentKind", "custom_model_development")

    def log_parent_artifact(self, path: Path, subdir: str | None = None) -> None:
        """Attach a file to this invocation's parent run (the sweep file, the report, figures)."""
        if self.parent_id is not None:
            self.client.log_artifact(self.parent_id, str(path), artifact_path=subdir)

    def close_open_children(self, status: str) -> int:
        """Mark child runs of this invocation still RUNNING (a worker died after writing the record,
        before closing its MLflow run) as `status`; returns how many. Call once every task has ended."""
        if not self.parent_id:
            return 0
        runs = self.client.search_runs([self.experiment_id], max_results=1000,
                                       filter_string=f"tags.mlflow.parentRunId = '{self.parent_id}' and "
                                                     "attributes.status = 'RUNNING'")
        for run in runs:
            self.client.set_terminated(run.info.run_id, status)
        return len(runs)


class SafeTracker:
    """Wraps a tracker so that a tracking failure never fails a run: the record is the truth.

    Each failed call is reported as a one-line warning (the first three; all are counted); a failed
    `start_child` returns None, which turns the rest of that run's tracking calls into no-ops. The
    next invocation reconciles MLflow with the records. Runs it opens carry this process as owner.
    """

    def __init__(self, inner: Any, echo: Any = print) -> None:
        self.inner = inner
        self.echo = echo
        self.failures = 0
        self.enabled = getattr(inner, "enabled", False)

    @property
    def parent_id(self) -> str | None:
        """The wrapped tracker's parent run."""
        return getattr(self.inner, "parent_id", None)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.inner, name)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must not decide a run's fate
            self.failures += 1
            if self.failures <= 3:
                text = str(exc).splitlines()[0][:200] if str(exc) else ""
                self.echo(f"warning: MLflow {name} failed ({type(exc).__name__}: {text}); the run goes on, its "
                          "record is written, and the next invocation reconciles MLflow with the records")
            return None

    def start_parent(self, name: str, tags: dict[str, str]) -> None:  # noqa: D102
        self._call("start_parent", name, {**tags, OWNER_TAG: owner_tag()})

    def end_parent(self, status: str) -> None:  # noqa: D102
        self._call("end_parent", status)

    def start_child(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str | None:  # noqa: D102
        return self._call("start_child", name, params, {**tags, OWNER_TAG: owner_tag()})

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:  # noqa: D102
        if run_id is not None:
            self._call("log_metrics", run_id, metrics, step)

    def log_artifact(self, run_id: str | None, path: Path, subdir: str | None = None) -> None:  # noqa: D102
        if run_id is not None:
            self._call("log_artifact", run_id, path, subdir)

    def end_child(self, run_id: str | None, status: str) -> None:  # noqa: D102
        if run_id is not None:
            self._call("end_child", run_id, status)

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:  # noqa: D102
        if run_id is not None:
            self._call("set_tags", run_id, tags)

    def log_dataset(self, run_id: str | None, name: str, digest: str, source: str,  # noqa: D102
                    profile: dict[str, Any]) -> None:
        if run_id is not None:
            self._call("log_dataset", run_id, name, digest, source, profile)

    def log_parent_artifact(self, path: Path, subdir: str | None = None) -> None:  # noqa: D102
        self._call("log_parent_artifact", path, subdir)

    def close_open_children(self, status: str) -> int:  # noqa: D102
        return self._call("close_open_children", status) or 0


_TRANSIENT = ("database is locked", "database table is locked", "busy", "deadlock", "could not serialize",
              "connection reset", "temporarily")


def is_transient(exc: BaseException) -> bool:
    """A store error worth retrying: sqlite busy or locked, a deadlock, a reset connection."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(s in text for s in _TRANSIENT)


class RetryingTracker:
    """Wraps a tracker: calls failing with a transient store error (sqlite busy, deadlock) are
    retried with jittered exponential back-off; any other error is raised at once."""

    def __init__(self, inner: Any, attempts: int = 8, base_delay: float = 0.2) -> None:
        self.inner = inner
        self.attempts = attempts
        self.base_delay = base_delay

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(self.attempts - 1):
                try:
                    return target(*args, **kwargs)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    time.sleep(self.base_delay * 2 ** attempt * (0.5 + random.random()))
            return target(*args, **kwargs)

        return call
