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


# ---- store lifecycle, ownership and reconciliation (kept apart from the logging calls above) ------------

OWNER_TAG = "bench.owner"  # "host|pid|process start time": which process opened the run
RECORD_TAG = "bench.record"  # set when a run was closed from its record by a later invocation
KNOWN_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
PROBE_TIMEOUT_S = 5.0


def _process_start(pid: int) -> str:
    """Start time of process `pid` in clock ticks since boot (Linux), '' where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 counted from the pid, 20 after the ')' field


def owner_tag() -> str:
    """This process as 'host|pid|start time', recorded on every run it opens."""
    import os
    import platform

    return f"{platform.node()}|{os.getpid()}|{_process_start(os.getpid())}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when the run's owner is provably gone: same host, and that pid is not running or is
    another process (a different start time). Unknown owners and other hosts are never called dead."""
    import os
    import platform

    if not owner or owner.count("|") != 2:
        return False
    host, pid_text, start = owner.split("|")
    if host != platform.node() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return start != _process_start(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    now = _process_start(pid)
    return bool(start and now and now != start)


def check_uri(uri: str) -> None:
    """Refuse, before anything is written, a tracking URI that cannot work (one-line BenchError)."""
    from urllib.parse import urlparse

    fix = "pass a URI such as sqlite:///path/mlflow.db or http://host:5000, or --no-mlflow"
    if not isinstance(uri, str) or not uri or "\x00" in uri or len(uri) > 2000:
        raise BenchError(f"tracking URI {uri[:80]!r} is not usable; {fix}")
    scheme = urlparse(uri).scheme.split("+")[0].lower()
    if scheme not in KNOWN_SCHEMES:
        raise BenchError(f"tracking URI {uri[:200]!r} has no known scheme ({', '.join(KNOWN_SCHEMES)}); {fix}")
    if scheme in ("sqlite", "file"):
        path = Path(uri[len("sqlite:///"):]) if scheme == "sqlite" else Path(urlparse(uri).path)
        if scheme == "sqlite" and not uri.startswith("sqlite:///"):
            raise BenchError(f"tracking URI {uri[:200]!r}: a sqlite URI is sqlite:///relative/path.db or "
                             f"sqlite:////absolute/path.db; {fix}")
        folder = path.parent if scheme == "sqlite" else path
        if scheme == "sqlite" and path.is_dir():
            raise BenchError(f"tracking URI {uri[:200]!r} names a folder, not a database file; {fix}")
        if not folder.exists() and scheme == "sqlite":
            raise BenchError(f"tracking URI {uri[:200]!r}: folder {folder} does not exist; create it or {fix}")
    if scheme in ("http", "https"):
        import os

        probe_server(uri)
        # a server that dies mid-sweep: MLflow's default retries would stall each call for minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """A tracking server that does not answer within seconds is an error now, not after minutes of retries."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as reply:
            reply.read(64)
    except urllib.error.HTTPError:
        return  # it answers (perhaps without /health): that is all this probe asks
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BenchError(f"tracking server {uri[:200]} does not answer within {timeout:g} s ({reason}); start it, "
                         "pass another --tracking-uri, or --no-mlflow") from None


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def store_problem(db: Path) -> str | None:
    """Why an existing MLflow sqlite store cannot be used as it is, or None when it looks whole."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            tables = {row[0] for row in con.execute("select name from sqlite_master where type='table'")}
            version = (con.execute("select version_num from alembic_version").fetchall()
                       if "alembic_version" in tables else [])
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"not a readable SQLite database ({exc})"
    missing = {"experiments", "runs", "metrics", "params", "tags"} - tables
    if missing or not version:
        return f"its creation was interrupted (missing: {', '.join(sorted(missing)) or 'schema version'})"
    return None


def prepare_store(uri: str, results: Path, echo: Any = print) -> None:
    """Create the embedded sqlite store atomically under the results folder's lock, or check it.

    A fresh store is built in a temporary file and renamed into place, so a kill during creation
    leaves no half-made `mlflow.db`, and two invocations on a fresh results folder do not race
    (the second waits for the lock, then finds the finished store). A store that is broken (left by
    an older version killed mid-creation) is an error that says exactly what to do.
    """
    import os

    from filelock import FileLock, Timeout

    db = _sqlite_path(uri)
    if db is None:
        return
    db = db.resolve()
    lock = FileLock(str(db.parent / f".{db.name}.lock"))
    try:
        with lock.acquire(timeout=120):
            for stale in db.parent.glob(f".tmp-{db.name}-*"):  # left by a kill during creation
                _remove_quietly(stale)
            if db.exists():
                problem = store_problem(db)
                if problem:
                    raise BenchError(f"MLflow store {db} is broken: {problem}; move it aside (mv it to "
                                     f"{db.name}.broken) and rerun, or pass --no-mlflow (run records are unaffected)")
                return
            tmp = db.parent / f".tmp-{db.name}-{os.getpid()}"
            try:
                _create_store(f"sqlite:///{tmp}", results)
                os.replace(tmp, db)
            finally:
                _remove_quietly(tmp)
                _remove_quietly(Path(f"{tmp}-journal"))
            echo(f"created the MLflow store {db}")
    except Timeout:
        raise BenchError(f"the MLflow store {db} stayed locked for 120 s by another invocation (lock "
                         f"{lock.lock_file}); wait for it, or pass --no-mlflow") from None


def _create_store(uri: str, results: Path) -> None:
    """Build an MLflow sqlite store (tables, migrations, default experiment) at `uri` and close it."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    store = SqlAlchemyStore(uri, (Path(results).resolve() / "mlartifacts").as_uri())
    store.engine.dispose()


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def reconcile(tracker: Any, results: Path, sweep: str, echo: Any = print) -> dict[str, int]:
    """Make MLflow agree with the records after an interrupted invocation.

    Runs of this sweep's experiment that are not FINISHED and whose owner is provably dead (or that
    an earlier version marked KILLED) are closed from their record when one exists: the record's test
    metrics are logged, the status becomes FINISHED/FAILED as in the record, and the tag `bench.record`
    points to it. A dead owner's run without a record (killed before it finished) becomes KILLED.
    Runs of live owners, of other hosts, or without an owner tag are left alone.
    """
    from bench.records import read_record, record_path

    client = tracker.client
    counts = {"closed_from_record": 0, "killed": 0, "left_alone": 0}
    runs = client.search_runs([tracker.experiment_id], filter_string="attributes.status != 'FINISHED'",
                              max_results=5000)
    for run in runs:
        info, tags = run.info, run.data.tags
        status = info.status
        if status == "FAILED" and tags.get(RECORD_TAG):
            continue
        owner_dead = owner_is_dead(tags.get(OWNER_TAG))
        if status in ("RUNNING", "SCHEDULED") and not owner_dead:
            counts["left_alone"] += 1
            continue
        key = tags.get("run_key") or tags.get("bench.run_key")
        rec = read_record(record_path(results, sweep, key)) if key else None
        if rec is not None and rec.get("mlflow_run_id") == info.run_id:
            if rec["status"] == "ok" and isinstance(rec.get("metrics"), dict):
                have = set(run.data.metrics)
                from bench.runner import scalar_metrics

                missing = {k: v for k, v in section("test", scalar_metrics(rec["metrics"])).items()
                           if _metric_key(k) not in have}  # the names the runner logs them under
                tracker.log_metrics(info.run_id, missing)
            client.set_tag(info.run_id, RECORD_TAG, str(record_path(results, sweep, key)))
            client.set_terminated(info.run_id, "FINISHED" if rec["status"] == "ok" else "FAILED")
            counts["closed_from_record"] += 1
        elif status in ("RUNNING", "SCHEDULED"):
            client.set_terminated(info.run_id, "KILLED")
            counts["killed"] += 1
    return counts


class SafeTracker:
    """Wraps a tracker so that a tracking failure never fails a run: the record is the truth.

    Each failed call is reported once as a one-line warning (and counted); a failed `start_child`
    returns None, which turns the rest of that run's tracking calls into no-ops. The next
    invocation reconciles MLflow with the records.
    """

    def __init__(self, inner: Any, echo: Any = print) -> None:
        self.inner = inner
        self.echo = echo
        self.failures = 0
        self.enabled = getattr(inner, "enabled", False)

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

    def __getattr__(self, name: str) -> Any:
        """Every other tracker call (set_tags, log_dataset, ...) guarded the same way; plain attributes as they are."""
        value = getattr(self.inner, name)
        if not callable(value):
            return value
        return lambda *args, **kwargs: self._call(name, *args, **kwargs)
