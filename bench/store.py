"""The MLflow store's life cycle: its URI checked before anything is written, the embedded
sqlite store created atomically, and the store reconciled with the records after a kill.

The embedded default is `sqlite:///<results>/mlflow.db` with artifacts under
`<results>/mlartifacts`; any tracking URI (e.g. a team's MLflow server) can be given instead.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.addresses import SERVER_DATABASES, check_database
from bench.errors import BenchError
from bench.outputs import check_output_file
from bench.ownership import OWNER_TAG, owner_is_dead
from bench.params import short
from bench.records import read_record, record_path
from bench.scratch import start_writing
from bench.tracking import MlflowTracker, NullTracker, metric_key, quiet_mlflow_loggers, scalar_metrics, section

RECORD_TAG = "bench.record"  # set when a run was closed from its record by a later invocation
KNOWN_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mariadb", "mssql", "databricks")
PROBE_TIMEOUT_S = 5.0


def default_uri(results: Path) -> str:
    """The embedded default tracking URI for a results folder."""
    return f"sqlite:///{Path(results).resolve() / 'mlflow.db'}"


def check_uri(uri: str, created: bool = False) -> None:
    """Refuse, before anything is written, a tracking URI that cannot work (one-line BenchError).

    sqlite: an on-disk database (not in memory) whose folder exists; an existing file must be a
    regular file holding a whole MLflow store. `created` (the embedded default store) lets the
    folder be absent: it is the results folder, created later. file: / plain paths: MLflow 3's file
    store is in maintenance mode and refuses to open (unless MLFLOW_ALLOW_FILE_STORE=true).
    http(s): the server answers within seconds. postgresql, mysql, mssql: the driver is installed,
    the server answers and a login succeeds within seconds (`bench.addresses`).
    """
    from urllib.parse import urlparse

    fix = "pass a URI such as sqlite:///path/mlflow.db or http://host:5000, or --no-mlflow"
    if not isinstance(uri, str) or not uri.strip() or "\x00" in uri or len(uri) > 2000:
        raise BenchError(f"tracking URI {short(repr(uri), 80)} is not usable; {fix}")
    scheme = urlparse(uri).scheme.split("+")[0].lower()
    if scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
            raise BenchError(f"tracking URI {short(uri, 200)!r}: MLflow 3's file store is in maintenance mode and "
                             "refuses new stores; use sqlite:///PATH/mlflow.db (`mlflow migrate-filestore` converts "
                             "an old one), or set MLFLOW_ALLOW_FILE_STORE=true")
        if scheme == "":
            return
    if scheme not in KNOWN_SCHEMES:
        raise BenchError(f"tracking URI {short(uri, 200)!r} has no known scheme ({', '.join(KNOWN_SCHEMES)}); {fix}")
    if scheme == "sqlite":
        _check_sqlite(uri, fix, created)
    elif scheme in ("http", "https"):
        probe_server(uri)
        # a server that dies mid-sweep: MLflow's default retries would stall each call for minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    elif scheme in SERVER_DATABASES:
        try:
            check_database(uri, f"tracking URI {short(uri, 120)!r}", "start the database server, fix the URL, or "
                           "pass --no-mlflow")
        except BenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed URL: SQLAlchemy's words, on one line
            raise BenchError(f"tracking URI {short(uri, 200)!r} is not a database URL ({short(exc, 120)}); "
                             f"{fix}") from None


def _check_sqlite(uri: str, fix: str, created: bool) -> None:
    """An on-disk sqlite store: its folder exists (unless `created`); an existing file is a whole store."""
    what = f"tracking URI {short(uri, 200)!r}"
    if not uri.startswith("sqlite:///") or uri[len("sqlite:///"):] in ("", ":memory:"):
        raise BenchError(f"{what}: a sqlite URI is sqlite:///relative/path.db or sqlite:////absolute/path.db (not in "
                         f"memory: the runs would vanish); {fix}")
    path = Path(uri[len("sqlite:///"):].split("?")[0])
    if path.is_dir():
        raise BenchError(f"{what} names a folder, not a database file; {fix}")
    if os.path.lexists(path):
        try:
            check_output_file(path, what)
        except BenchError as exc:
            raise BenchError(f"{exc}; {fix}") from None
        problem = store_problem(path)
        if problem:
            raise BenchError(f"MLflow store {path} is broken: {problem}; move it aside (mv it to {path.name}.broken) "
                             "and rerun, or pass --no-mlflow (run records are unaffected)")
        return
    if not created:
        if not path.parent.is_dir():
            raise BenchError(f"{what}: folder {path.parent} does not exist; create it or {fix}")
        check_output_file(path, what)


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
    from filelock import FileLock, Timeout

    start_writing()
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
            except Exception as exc:  # noqa: BLE001 - SQLAlchemy's, alembic's or MLflow's: one line, never a traceback
                if disk_full(exc):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(db)) from None
                raise BenchError(f"could not create the MLflow store {db} ({type(exc).__name__}: {short(exc, 160)}); "
                                 "check the folder, or pass --no-mlflow (run records are unaffected)") from None
            finally:
                _remove_quietly(tmp)
                _remove_quietly(Path(f"{tmp}-journal"))
            echo(f"created the MLflow store {db}")
    except Timeout:
        raise BenchError(f"the MLflow store {db} stayed locked for 120 s by another invocation (lock "
                         f"{lock.lock_file}); wait for it, or pass --no-mlflow") from None


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) says the disk or quota is full (an OSError
    with ENOSPC/EDQUOT, or SQLite's 'database or disk is full' through SQLAlchemy or MLflow)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "disk is full" in str(exc).lower() or "no space left" in str(exc).lower():
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _create_store(uri: str, results: Path) -> None:
    """Build an MLflow sqlite store (tables, migrations, default experiment) at `uri` and close it."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    quiet_mlflow_loggers()
    store = SqlAlchemyStore(uri, (Path(results).resolve() / "mlartifacts").as_uri())
    store.engine.dispose()


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def reconcile(tracker: MlflowTracker, results: Path, sweep: str) -> dict[str, int]:
    """Make MLflow agree with the records after an interrupted invocation.

    Runs of this sweep's experiment that are not FINISHED and whose owner is provably dead (or that
    an earlier version marked KILLED) are closed from their record when one exists: the record's test
    metrics are logged, the status becomes FINISHED/FAILED as in the record, and the tag `bench.record`
    points to it. A dead owner's run without a record (killed before it finished) becomes KILLED.
    Runs of live owners, of other hosts, or without an owner tag are left alone.
    """
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
                missing = {k: v for k, v in section("test", scalar_metrics(rec["metrics"])).items()
                           if metric_key(k) not in have}  # the names run_one logs them under
                tracker.log_metrics(info.run_id, missing)
            client.set_tag(info.run_id, RECORD_TAG, str(record_path(results, sweep, key)))
            client.set_terminated(info.run_id, "FINISHED" if rec["status"] == "ok" else "FAILED")
            counts["closed_from_record"] += 1
        elif status in ("RUNNING", "SCHEDULED"):
            client.set_terminated(info.run_id, "KILLED")
            counts["killed"] += 1
    return counts


def open_tracker(uri: str, root: Path, sweep: str, description: str = "",
                 echo: Callable[[str], None] = print) -> MlflowTracker | NullTracker:
    """The MLflow tracker of a sweep: store created or checked, experiment described, then
    reconciled with the records. Opening, describing and reconciling are tracking: a failure is a
    warning (tracking is then off), except a full disk, which stops the invocation (exit 1)."""
    prepare_store(uri, root, echo=echo)
    try:
        tracker = MlflowTracker(uri, sweep, Path(root).resolve() / "mlartifacts")
    except Exception as exc:  # noqa: BLE001 - tracking never decides a run's fate: go on without it
        if disk_full(exc):  # records could not be written either
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), uri) from None
        echo(f"warning: MLflow tracking is off for this invocation: the store {short(uri, 120)} cannot be opened "
             f"({type(exc).__name__}: {short(exc, 160)}); the runs and their records go on")
        return NullTracker()
    try:
        tracker.describe_experiment(description)
    except Exception as exc:  # noqa: BLE001 - a description never stops the sweep
        echo(f"warning: could not describe the MLflow experiment ({type(exc).__name__})")
    try:
        counts = reconcile(tracker, root, sweep)
    except Exception as exc:  # noqa: BLE001 - reconciliation never stops the sweep
        text = " ".join(str(exc).split())[:200]
        echo(f"warning: could not reconcile MLflow with the records ({type(exc).__name__}: {text})")
        return tracker
    if counts["closed_from_record"]:
        echo(f"closed {counts['closed_from_record']} MLflow run(s) from their records "
             "(an interrupted invocation had written the record but not closed the run)")
    if counts["killed"]:
        echo(f"marked {counts['killed']} MLflow run(s) of dead invocations as KILLED")
    return tracker
