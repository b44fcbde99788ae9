"""What one task does, in whichever process runs it: one run of a sweep, or a share of a study's trials.

The serial executor calls these functions in the `bench` process; the Dask executor submits them
to workers. In a worker process, everything that is per process is made once per invocation
(`RunContext.token`) and kept between tasks: the imported user plugins and torch's thread count,
a small cache of loaded datasets and their splits (the split files under `<results>/cache/splits/`
stay the single source of truth), the MLflow client, the environment block of the records.

A run task checks the run's record first, under a per-key file lock: a Dask retry of a run that
actually finished returns the existing record instead of training it again, and two processes
never train the same key at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.data import CrossModalData
from bench.environment import environment
from bench.records import read_record, record_path
from bench.run import failure_fields, finish_record, load_dataset, record_base, run_one
from bench.spec import RunSpec
from bench.splits import Split, SplitSpec, get_split
from bench.threads import auto_threads
from bench.tracking import MlflowTracker, NullTracker, RetryingTracker, RunLabels, SafeTracker, Tracker

PROGRESS_TOPIC = "bench-progress"
SQLITE_TIMEOUT_S = 60  # busy timeout of the embedded sqlite MLflow store with many writers
DATA_CACHE_SIZE = 4  # datasets kept in memory per process


@dataclass(frozen=True)
class RunContext:
    """What every run task of one `bench run` invocation shares (pickled once to each worker)."""

    sweep: str
    results: str  # absolute path of the shared results folder
    device: str  # the sweep's device ('auto' is resolved per process)
    started: str  # ISO time (UTC) the invocation began
    force: bool = False
    positions: dict[str, int] = field(default_factory=dict)  # run key -> order in the sweep file
    tracking_uri: str | None = None  # for workers: they open their own client
    parent_run_id: str | None = None
    plugin_roots: tuple[str, ...] = ()
    threads: int | None = None  # per run in the bench process (None: auto, see bench.threads); workers: 1 if None
    labels: dict[str, RunLabels] = field(default_factory=dict)  # run key -> names in MLflow
    invocation: dict[str, Any] = field(default_factory=dict)  # command line, overrides, resolved sweep
    embeddings_max: int = 0  # keep a sample of at most so many test embeddings per run (0: none)

    @property
    def token(self) -> str:
        """Identifies the invocation (per-process state is made once per invocation)."""
        return f"{self.sweep}|{self.results}|{self.parent_run_id}|{self.started}"


@dataclass(frozen=True)
class TuneContext:
    """What a trial task needs: where the study is, the device, the plugins to import."""

    sweep: str
    results: str
    device: str
    storage: str | None  # RDB URL, or None for the sweep's journal file
    started: str
    plugin_roots: tuple[str, ...] = ()
    threads: int | None = None

    @property
    def token(self) -> str:
        """Identifies the invocation."""
        return f"tune|{self.sweep}|{self.results}|{self.started}"


class DataCache:
    """Datasets (a small LRU keyed by `RunSpec.data_key`) and their splits, loaded once per process.
    A failed load is not cached: the files may appear before the next run of that dataset."""

    def __init__(self, cache_root: Path, size: int = DATA_CACHE_SIZE) -> None:
        self.cache_root = Path(cache_root)
        self.size = size
        self._data: OrderedDict[str, CrossModalData] = OrderedDict()
        self._splits: dict[tuple[str, str], Split] = {}
        self._lock = threading.Lock()

    def data(self, spec: RunSpec) -> CrossModalData:
        """The spec's dataset."""
        with self._lock:
            if spec.data_key in self._data:
                self._data.move_to_end(spec.data_key)
                return self._data[spec.data_key]
            data = load_dataset(spec, self.cache_root)
            self._data[spec.data_key] = data
            while len(self._data) > self.size:
                old, _ = self._data.popitem(last=False)
                self._splits = {k: v for k, v in self._splits.items() if k[0] != old}
            return data

    def split(self, spec: RunSpec, data: CrossModalData) -> Split:
        """The spec's split of `data` (the persisted one under the cache)."""
        key = (spec.data_key, repr(sorted(spec.split.items())))
        with self._lock:
            if key not in self._splits:
                self._splits[key] = get_split(data, SplitSpec(**spec.split), self.cache_root)
            return self._splits[key]

    def adopt(self, spec: RunSpec, data: CrossModalData) -> None:
        """Keep a dataset loaded elsewhere (the preflight) for the runs of `spec`'s dataset."""
        with self._lock:
            self._data[spec.data_key] = data


# --- per-process state -------------------------------------------------------------------------


@dataclass
class _Process:
    token: str
    cache: DataCache
    tracker: Tracker
    environment: dict[str, Any]
    device: Any


_STATE: dict[str, Any] = {"process": None, "setup": None}
_STATE_LOCK = threading.Lock()


def process_state(ctx: RunContext, tracker: Tracker | None = None, cache: DataCache | None = None) -> _Process:
    """This process's state for the invocation of `ctx` (made on its first task). In the `bench`
    process the invocation hands its own tracker and cache; a worker opens its own."""
    with _STATE_LOCK:
        state = _STATE["process"]
        if state is None or state.token != ctx.token:
            device = worker_device(ctx.device)
            state = _Process(ctx.token, cache or DataCache(Path(ctx.results) / "cache"),
                             tracker or _worker_tracker(ctx), environment(device), device)
            _STATE["process"] = state
        return state


def _worker_tracker(ctx: RunContext) -> Tracker:
    """A worker's tracker: retried on a busy store, joined to the invocation's parent run, never raising."""
    if not ctx.tracking_uri:
        return NullTracker()
    inner = MlflowTracker(worker_tracking_uri(ctx.tracking_uri), ctx.sweep, Path(ctx.results) / "mlartifacts",
                          parent_id=ctx.parent_run_id)
    return SafeTracker(RetryingTracker(inner), echo=lambda _line: None)


def worker_tracking_uri(uri: str) -> str:
    """The tracking URI a worker uses: an embedded sqlite store gets a long busy timeout."""
    if uri.startswith("sqlite:") and "timeout=" not in uri:
        return f"{uri}{'&' if '?' in uri else '?'}timeout={SQLITE_TIMEOUT_S}"
    return uri


def setup_process(plugin_roots: tuple[str, ...], threads: int | None) -> None:
    """In a worker: undo Dask's malloc setting, import the submitting process's plugin roots and
    apply its thread count (once per process)."""
    threads = threads or 1  # a worker shares the machine with the others: one thread each
    if _STATE["setup"] == (plugin_roots, threads):
        return
    from bench.malloc import relax_malloc_trim
    from bench.registry import load_plugins

    relax_malloc_trim()
    load_plugins(plugin_roots, asked_by="the plugin folders of the submitting bench process")
    import torch

    torch.set_num_threads(threads)
    _STATE["setup"] = (plugin_roots, threads)


def worker_device(device: str) -> Any:
    """The torch device a run uses in this process. `auto` (or `cuda`) on a worker picks the
    worker's own GPU: the first visible device when CUDA_VISIBLE_DEVICES is set (the way to pin
    external `dask worker` processes), else `<worker index> mod <GPU count>` for the workers of a
    LocalCluster (named 0..N-1); in the `bench` process, the first GPU."""
    import torch

    from bench.method import resolve_device

    if device in ("auto", "cuda") and torch.cuda.is_available():
        if os.environ.get("CUDA_VISIBLE_DEVICES"):
            return torch.device("cuda:0")
        try:
            index = int(worker_name().rsplit("-", 1)[-1])
        except ValueError:
            index = 0
        return torch.device(f"cuda:{index % torch.cuda.device_count()}")
    return resolve_device(device)


def worker_name() -> str:
    """The Dask worker's name, or '0' outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "0"


def _emit(msg: dict[str, Any]) -> None:
    """Publish a progress event to the client (inside a Dask worker only)."""
    with contextlib.suppress(ImportError, ValueError):
        from distributed import get_worker

        get_worker().log_event(PROGRESS_TOPIC, msg)


# --- the tasks -----------------------------------------------------------------------------------


def _finished_here(rec: dict[str, Any] | None, ctx: RunContext) -> bool:
    """An ok record that this invocation must not redo (with --force: one started since it began)."""
    if rec is None or rec.get("status") != "ok":
        return False
    if not ctx.force:
        return True
    try:
        return datetime.fromisoformat(str(rec.get("started"))) >= datetime.fromisoformat(ctx.started)
    except ValueError:
        return False


def run_task(ctx: RunContext, spec: RunSpec, *, tracker: Tracker | None = None, cache: DataCache | None = None,
             echo: Callable[[str], None] | None = None, show_progress: bool = False) -> dict[str, Any]:
    """Run one spec to a written record, unless an ok record for it exists already; returns a small
    summary (status, reason, metrics, seconds, worker, whether the record was reused, best epoch)."""
    from filelock import FileLock

    in_worker = tracker is None
    if in_worker:
        setup_process(ctx.plugin_roots, ctx.threads)
    state = process_state(ctx, tracker, cache)
    path = record_path(Path(ctx.results), ctx.sweep, spec.key)
    rec = read_record(path)
    if _finished_here(rec, ctx):
        return summary(rec, reused=True)
    lock_dir = path.parent.parent / ".run-locks"  # beside runs/, so runs/ holds records only
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{spec.key}.lock")):  # another process on this key: wait for it
        rec = read_record(path)
        if _finished_here(rec, ctx):
            return summary(rec, reused=True)
        _emit({"event": "start", "key": spec.key, "worker": worker_name()})
        if not in_worker and ctx.threads is None:  # --threads auto in the bench process: the cores idle now
            import torch

            torch.set_num_threads(auto_threads())
        position = ctx.positions.get(spec.key, 0)
        try:
            data = state.cache.data(spec)
            split = state.cache.split(spec, data)
        except Exception as exc:  # the dataset or its split failed: every run of it fails the same way
            record = {**record_base(spec, position, state.environment, ctx.invocation), **failure_fields(exc)}
            return summary(finish_record(record, Path(ctx.results), 0.0), reused=False)
        rec = run_one(spec, data, split, state.device, state.tracker, Path(ctx.results), position=position,
                      environment=state.environment, echo=echo, show_progress=show_progress,
                      labels=ctx.labels.get(spec.key), invocation=ctx.invocation, embeddings_max=ctx.embeddings_max)
        return summary(rec, reused=False)


def summary(rec: dict[str, Any], reused: bool) -> dict[str, Any]:
    """What the invocation needs of a finished run (small: it travels back from a worker)."""
    steps = [row["step"] for row in rec.get("history", []) if isinstance(row, dict) and "val_map" in row]
    return {"key": rec["key"], "status": rec["status"], "reason": rec.get("reason"),
            "metrics": {k: rec.get("metrics", {}).get(k) for k in ("map_i2t", "map_t2i")},
            "total_s": rec.get("timings", {}).get("total_s", 0.0), "worker": worker_name(), "reused": reused,
            "best_epoch": rec.get("best_epoch"), "last_epoch": max(steps) if len(steps) > 1 else None}


@dataclass(frozen=True)
class TrialShare:
    """Some trials of one study, for one process: the study's template run and the sampler's seed."""

    template: RunSpec
    study_name: str
    trials: int
    seed: int
    timeout: float | None = None


def tune_task(ctx: TuneContext, share: TrialShare, *, callbacks: tuple = (), show_progress: bool = False,
              cache: DataCache | None = None) -> int:
    """The trials of `share` in this process; returns how many it ran. `callbacks` (Optuna trial
    callbacks) and `cache` are only given in the `bench` process."""
    import optuna

    from bench.registry import get_method
    from bench.study import make_objective, make_pruner, storage_for

    in_worker = cache is None
    if in_worker:
        setup_process(ctx.plugin_roots, ctx.threads)
        with _STATE_LOCK:
            if _STATE.get("tune") is None or _STATE["tune"][0] != ctx.token:
                _STATE["tune"] = (ctx.token, DataCache(Path(ctx.results) / "cache"))
            cache = _STATE["tune"][1]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    template = share.template
    data = cache.data(template)
    split = cache.split(template, data)
    study = optuna.load_study(study_name=share.study_name,
                              storage=storage_for(Path(ctx.results), ctx.sweep, ctx.storage),
                              sampler=optuna.samplers.TPESampler(seed=share.seed, constant_liar=in_worker),
                              pruner=make_pruner())
    objective = make_objective(get_method(template.method), template, data, split, worker_device(ctx.device),
                               show_progress)
    before = len(study.trials)
    study.optimize(objective, n_trials=share.trials, timeout=share.timeout, catch=(FloatingPointError, RuntimeError),
                   callbacks=list(callbacks))
    return len(study.trials) - before
