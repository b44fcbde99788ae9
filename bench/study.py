"""The Optuna pieces any process needs: the study storage, the objective, the pruner, the sampler seed.

One study per (dataset entry, method) of a sweep; the objective is the best validation mAP of a run
whose parameters are the sweep's plus the method's `search_space(trial)`; per-epoch validation
reports feed the pruner. Studies live in a journal file under `<results>/<sweep>/tune/` (one
machine) or any RDB URL (`--storage postgresql://...`, many machines). The test split is never
touched. The invocation itself (`bench tune`) is `bench.tune`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.addresses import check_database
from bench.errors import BenchError
from bench.outputs import check_output_file
from bench.ownership import OWNER_TAG, owner_is_dead, owner_tag
from bench.params import short
from bench.run import execute
from bench.scratch import start_writing
from bench.spec import RunSpec
from bench.sweep import Sweep
from bench.sweep_entries import resolve_params


def best_params_path(results: Path, sweep: str, dataset_label: str, method: str) -> Path:
    """Where the best parameters of a study are saved (always inside `<results>/<sweep>/tune/`)."""
    folder = Path(results) / sweep / "tune"
    path = folder / f"{dataset_label}__{method.replace('/', '--')}.json"
    if path.resolve().parent != folder.resolve():  # labels are checked at parse time; this is the backstop
        raise BenchError(f"dataset label {dataset_label!r} would write outside {folder}; rename it")
    return path


def journal_path(results: Path, sweep: str) -> Path:
    """The default Optuna journal of a sweep."""
    return Path(results) / sweep / "tune" / "optuna.journal"


STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")


def check_storage(storage: str | None, results: Path, sweep: str) -> None:
    """Refuse an unusable storage URL or a corrupt journal before anything is written (BenchError).

    The default journal, when it exists, must be a regular file of Optuna journal lines. A sqlite
    URL must name a file on disk (not memory: the studies would vanish, and workers could not share
    it) in an existing folder, and an existing file must be a SQLite database. A server URL
    (postgresql://, mysql://, ...) needs its driver, a server that answers and a login, all within
    seconds (`bench.addresses.check_database`).
    """
    if storage is None:
        path = journal_path(results, sweep)
        if os.path.lexists(path):
            _read_journal(path)
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    fix = "pass e.g. sqlite:////abs/path/optuna.db or postgresql://user@host/db, or leave --storage out"
    what = f"--storage {short(storage, 200)!r}"
    try:
        url = make_url(storage)
    except (ArgumentError, ValueError):
        raise BenchError(f"{what} is not a database URL; {fix}") from None
    backend = url.get_backend_name()
    if backend not in STORAGE_SCHEMES:
        raise BenchError(f"{what}: unknown database '{short(backend)}'; {fix}")
    if backend == "sqlite":
        _check_sqlite_storage(url.database, what, fix)
    else:
        check_database(storage, what, f"start the database server or fix the URL; {fix}")


def _check_sqlite_storage(database: str | None, what: str, fix: str) -> None:
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise BenchError(f"{what} keeps the studies in memory: they would be lost at exit and workers could not "
                         f"share them; {fix}")
    path = Path(database)
    if not path.parent.is_dir():  # sqlite creates the file, never its folder
        raise BenchError(f"{what}: folder {path.parent} does not exist; create it or {fix}")
    try:
        check_output_file(path, what)
    except BenchError as exc:
        raise BenchError(f"{exc}; {fix}") from None
    if path.is_file() and path.stat().st_size:
        import sqlite3

        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                con.execute("select name from sqlite_master limit 1").fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise BenchError(f"{what}: {path} is not a readable SQLite database ({short(exc, 80)}); {fix}") from None


def _read_journal(path: Path) -> None:
    """Every line of an Optuna journal must be a JSON object with an op_code (a torn last line is fine).
    Only a regular file is read (opened without blocking, checked on the descriptor), line by line."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise BenchError(f"{path}: cannot read the Optuna journal ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BenchError(f"{path}: the Optuna journal is not a regular file (a pipe, device or folder?); move it "
                             "aside")
        previous = None
        for i, line in enumerate(fh, 1):
            if previous is not None:
                _journal_line(previous, i - 1, path)
            previous = line
        if previous is not None and previous.endswith(b"\n"):
            _journal_line(previous, i, path)


def _journal_line(line: bytes, number: int, path: Path) -> None:
    try:
        op = json.loads(line)
    except (ValueError, RecursionError):
        op = None
    if not isinstance(op, dict) or "op_code" not in op:
        raise BenchError(f"{path}: line {number} is not an Optuna journal entry (corrupt journal); move it aside "
                         f"(mv {path} {path}.bad) to start the studies afresh")


def storage_for(results: Path, sweep: str, storage: str | None) -> Any:
    """An Optuna storage: the given URL, else a journal file under the sweep's tune folder."""
    start_writing()
    import optuna

    optuna.logging.disable_default_handler()  # Optuna's warnings go through bench.quiet: one line each
    optuna.logging.enable_propagation()
    if storage:
        try:
            return optuna.storages.RDBStorage(storage, heartbeat_interval=60, grace_period=180)
        except Exception as exc:  # noqa: BLE001 - any failure to open it is the user's URL or server
            raise BenchError(f"--storage {storage[:200]!r} cannot be opened ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = journal_path(results, sweep)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def sampler_seed(base: int, trials_before: int, worker: int = 0) -> int:
    """The TPE sampler's seed for one invocation (or one worker) of a study.

    Seeding with the sweep seed alone made a second invocation replay the first one's trials and
    parallel workers duplicate each other. Mixing in how many trials the study already holds
    and the worker index gives every invocation and worker its own stream, while the same
    history and worker index still reproduce the same trials."""
    import numpy as np

    return int(np.random.SeedSequence([int(base), int(trials_before), int(worker)]).generate_state(1)[0])


def fail_stale_trials(study: Any) -> int:
    """Mark FAIL the RUNNING trials of `study` whose owner process is provably dead; returns how many.

    Each trial records its owner (host, pid, process start) as the user attribute `bench.owner`;
    a killed `bench tune` leaves its trial RUNNING for good otherwise. Live owners (another
    `bench tune` on the same study) and other hosts are left alone.
    """
    import optuna

    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if owner_is_dead(trial.user_attrs.get(OWNER_TAG)):
            try:
                study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            except Exception:  # noqa: BLE001 - another process may have just closed it
                continue
            failed += 1
    return failed


def studies(sweep: Sweep) -> list[RunSpec]:
    """One template spec per (dataset label, method) pair: the first seed and first grid point."""
    seen, out = set(), []
    for spec in sweep.specs:
        pair = (spec.dataset_label, spec.method)
        if pair not in seen and spec.dataset_label not in sweep.skipped:
            seen.add(pair)
            out.append(spec)
    return out


def make_objective(entry: Any, template: RunSpec, data: Any, split: Any, device: Any,
                   show_progress: bool = False) -> Callable[[Any], float]:
    """The Optuna objective: best validation mAP of a run with the trial's suggested parameters."""
    import optuna

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(OWNER_TAG, owner_tag())  # lets a later `bench tune` fail it if this process dies
        suggested = entry.cls.search_space(trial)
        free = {k: v for k, v in suggested.items() if k not in entry.fixed}
        params = resolve_params(entry, template.dataset, {**template.params, **free}, f"tune {template.method}")
        spec = dataclasses.replace(template, params=params)

        def on_report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        out = execute(spec, data, split, device, on_report=on_report, evaluate_test=False,
                      show_progress=show_progress)
        trial.set_user_attr("best_epoch", out["best_epoch"])
        return float(out["val_map"])

    return objective


def make_pruner() -> Any:
    """The pruner of every study (median of earlier trials at the same epoch, after warm-up)."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)


def has_search_space(cls: type) -> bool:
    """Whether a method's `search_space(trial)` suggests anything (Optuna's FixedTrial without values
    raises as soon as a parameter is suggested)."""
    import optuna

    try:
        cls.search_space(optuna.trial.FixedTrial({}))
    except ValueError:
        return True
    return False


def shares(trials: int, workers: int) -> list[int]:
    """Split `trials` into at most `workers` non-empty, near-equal shares (sum = trials)."""
    n = max(1, min(trials, workers))
    return [trials // n + (i < trials % n) for i in range(n)]
