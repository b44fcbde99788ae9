"""MLflow tracking: an experiment per sweep, a parent run per invocation, a child run per spec.

The embedded default store is `sqlite:///<results>/mlflow.db` with artifacts under
`<results>/mlartifacts`; any tracking URI (e.g. a team's MLflow server) can be given instead.
Plugins never see this module: the runner forwards the fit context's logs here.
"""

from __future__ import annotations

import json
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


# --- names: what a run, its tags, params and metrics are called in MLflow -------------------

HARNESS_PREFIX = "bench."  # harness parameters (seed, dataset, split, ...); method ones are plain
SHARED_VIEW_KEY = "bench-by-method"  # the experiment's shared UI state made by `bench ui`


def run_name(spec: Any) -> str:
    """What differs inside an experiment leads: `pgnn_con/no_gan · synthetic · s0`."""
    return f"{spec.method_label} · {spec.dataset_label} · s{spec.seed}"


def child_tags(spec: Any, git_commit: str) -> dict[str, str]:
    """Tags of a run: method, family, variant (`full` for the family's own model), dataset, seed, run
    key, commit and whether the working tree had uncommitted changes."""
    return {"method": spec.method, "family": spec.family, "variant": spec.method.partition("/")[2] or "full",
            "dataset": spec.dataset_label, "seed": str(spec.seed), "run_key": spec.key,
            "method_label": spec.method_label, "git_commit": git_commit.removesuffix("-dirty"),
            "git_dirty": str(git_commit.endswith("-dirty")).lower(), "bench.role": "run"}


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

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:  # noqa: D102
        pass

    def log_dataset(self, run_id: str | None, name: str, digest: str, source: str,
                    profile: dict[str, Any]) -> None:  # noqa: D102
        pass

    def describe_experiment(self, description: str) -> None:  # noqa: D102
        pass

    def log_parent_artifact(self, path: Path, subdir: str | None = None) -> None:  # noqa: D102
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

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:
        """Set tags on a run (e.g. a failed run's `failure_reason`)."""
        from mlflow.entities import RunTag

        if run_id is not None and tags:
            try:
                self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])
            except Exception as exc:  # a tag must never change a run's outcome
                logging.getLogger("bench").warning("MLflow: could not tag run %s: %s", run_id, exc)

    def log_dataset(self, run_id: str | None, name: str, digest: str, source: str, profile: dict[str, Any]) -> None:
        """Record the run's input (`mlflow.log_input`): dataset name, a digest of data + split, a profile."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        if run_id is None:
            return
        dataset = Dataset(name=name, digest=digest[:36], source_type="bench", source=json.dumps({"uri": source}),
                          profile=json.dumps(profile, default=str))
        try:
            self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context",
                                                                                          "train")])])
        except Exception as exc:  # the record holds the same facts; tracking must not fail the run
            logging.getLogger("bench").warning("MLflow: could not log the input of run %s: %s", run_id, exc)

    def describe_experiment(self, description: str) -> None:
        """The experiment's description (shown in the UI) is the sweep's `description`."""
        if description:
            self.client.set_experiment_tag(self.experiment_id, "mlflow.note.content", description)
        self.client.set_experiment_tag(self.experiment_id, "mlflow.experimentKind", "custom_model_development")

    def log_parent_artifact(self, path: Path, subdir: str | None = None) -> None:
        """Attach a file to this invocation's parent run (the sweep file, the report, figures)."""
        if self.parent_id is not None:
            self.client.log_artifact(self.parent_id, str(path), artifact_path=subdir)


def grouped_view(client: Any, experiment_id: str) -> str:
    """Write the experiment's shared UI state `bench-by-method`: child runs only, grouped by the
    `method` and `dataset` tags (mean over seeds), test metrics as columns, best test Avg first.
    Returns the share key; open it with `#/experiments/<id>/runs?viewStateShareKey=<key>`."""
    runs = client.search_runs([experiment_id], filter_string="tags.`bench.role` = 'run'", max_results=1000)
    # the table orders metric columns by name; the test mAP figures (all, @k) keep it readable
    metrics = sorted({k for r in runs for k in r.data.metrics if k.startswith("test/map")})
    state = {
        "searchFilter": "tags.`bench.role` = 'run'",
        "orderByKey": "metrics.`test/map_avg`", "orderByAsc": False,
        "selectedColumns": [f"metrics.`{k}`" for k in metrics] + ["tags.`dataset`", "tags.`seed`",
                                                                   "tags.`variant`"],
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "method"},
                                                                     {"mode": "tag", "groupByData": "dataset"}]},
        "runListHidden": False,
    }
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{SHARED_VIEW_KEY}", json.dumps(state))
    return SHARED_VIEW_KEY


def _metric_key(key: str) -> str:
    """MLflow metric names allow [\\w.\\-/ :]; '@' (as in p@100) becomes '_at_'."""
    return key.replace("@", "_at_")
