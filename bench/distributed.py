"""Scale-out on Dask distributed: the runs of a sweep, and the trials of a study, on N workers.

The client (the `bench` process) parses the sweep, takes the sweep lock, opens the MLflow
parent run and submits one task per pending run key. Each task runs on a worker process, which:

- loads a dataset and its split once per process (kept in memory for the next runs of the same
  dataset; the split file under `<results>/cache/splits/` stays the single source of truth);
- checks the run's record first (a Dask retry of a run that actually finished returns the
  existing record instead of training it again) under a per-key file lock, so that two
  processes never train the same key at once;
- writes the record itself, atomically, into the shared results folder, and logs its MLflow
  child run under the client's parent run.

A worker killed midway loses only the run it was training: no record was written, Dask
reschedules the task on another worker, and if the cluster gives up the next invocation
redoes it (the resume rules are those of the serial runner).

GPUs: with a CUDA device wanted, every task asks for the worker resource `GPU=1`, so a worker
that owns one GPU trains one run at a time. `device: auto` on a worker picks the worker's own
GPU: the first visible device when `CUDA_VISIBLE_DEVICES` is set for the worker (the way to pin
external `dask worker` processes), else device `<worker index> mod <GPU count>` for the workers
of a LocalCluster (named 0..N-1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.records import read_record, record_path
from bench.sweep import RunSpec, Sweep

PROGRESS_TOPIC = "bench-progress"
SQLITE_TIMEOUT_S = 60  # busy timeout of the embedded sqlite MLflow store with many writers
DATA_CACHE_SIZE = 4  # datasets kept in memory per worker process


# ----------------------------------------------------------------------------- cluster set-up


@dataclasses.dataclass
class ClusterOptions:
    """How to get workers: a LocalCluster of `workers`, an existing scheduler, or a SLURM config file."""

    workers: int | None = None
    threads: int | None = None
    scheduler: str | None = None
    cluster_file: str | None = None

    @property
    def wanted(self) -> bool:
        """True when any scale-out option was given."""
        return bool(self.workers or self.scheduler or self.cluster_file)

    def check(self) -> None:
        """One scale-out source at a time."""
        given = [n for n, v in (("--workers", self.workers), ("--scheduler", self.scheduler),
                                ("--cluster", self.cluster_file)) if v]
        if len(given) > 1 and not (given == ["--workers", "--cluster"]):
            raise BenchError(f"{' and '.join(given)} exclude each other: --workers N starts a local cluster, "
                             "--scheduler ADDRESS uses a running one, --cluster FILE starts one on SLURM "
                             "(with --workers N jobs)")
        if self.workers is not None and self.workers < 1:
            raise BenchError("--workers must be at least 1")
        if self.cluster_file:
            load_cluster_file(self.cluster_file)  # a bad file is reported before anything is written


SLURM_KEYS = {"cores", "memory", "processes", "queue", "account", "walltime", "job_extra_directives",
              "job_script_prologue", "worker_extra_args", "local_directory", "log_directory", "interface",
              "python", "job_directives_skip", "name", "shebang", "job_cpu", "job_mem", "death_timeout"}
SLURM_TOP = {"slurm", "jobs", "gpus_per_job"}


def load_cluster_file(path: str | Path) -> dict[str, Any]:
    """Parse and check a `--cluster` YAML file for dask-jobqueue's SLURMCluster (nothing is started).

    Layout::

        slurm:                     # keyword arguments of dask_jobqueue.SLURMCluster
          cores: 8
          memory: 32GB
          queue: gpu
          walltime: "04:00:00"
          job_extra_directives: ["--gres=gpu:1"]
        jobs: 4                    # SLURM jobs to start (each runs `processes` workers; default 1)
        gpus_per_job: 1            # advertise GPU=<n> resources per worker (needs --gres above)

    Returns {"slurm": kwargs, "jobs": int, "gpus_per_job": int}.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--cluster {path}: no such file; write a YAML file with a 'slurm:' mapping "
                         "(see README, Scale-out)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BenchError(f"--cluster {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("slurm"), dict):
        raise BenchError(f"--cluster {path}: expected a mapping with a 'slurm:' mapping of SLURMCluster "
                         "arguments (cores, memory, queue, walltime, ...)")
    unknown = sorted(set(raw) - SLURM_TOP)
    if unknown:
        raise BenchError(f"--cluster {path}: unknown key(s) {unknown}; allowed: {sorted(SLURM_TOP)}")
    kwargs = dict(raw["slurm"])
    bad = sorted(set(kwargs) - SLURM_KEYS)
    if bad:
        raise BenchError(f"--cluster {path}: slurm.{bad[0]} is not a SLURMCluster argument bench passes on; "
                         f"allowed: {', '.join(sorted(SLURM_KEYS))}")
    for key in ("cores", "memory"):
        if key not in kwargs:
            raise BenchError(f"--cluster {path}: slurm.{key} is required by SLURMCluster (e.g. cores: 8, "
                             "memory: 32GB)")
    if not isinstance(kwargs["cores"], int) or isinstance(kwargs["cores"], bool) or kwargs["cores"] < 1:
        raise BenchError(f"--cluster {path}: slurm.cores must be a positive integer, got {kwargs['cores']!r}")
    out: dict[str, Any] = {"slurm": kwargs}
    for key, default in (("jobs", 1), ("gpus_per_job", 0)):
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "jobs" else 0):
            raise BenchError(f"--cluster {path}: {key} must be an integer >= {1 if key == 'jobs' else 0}, "
                             f"got {value!r}")
        out[key] = value
    if out["gpus_per_job"]:
        extra = list(kwargs.get("worker_extra_args") or [])
        extra += ["--resources", f"GPU={out['gpus_per_job']}"]
        kwargs["worker_extra_args"] = extra
    return out


def wants_gpu(device: str) -> bool:
    """Whether the runs of a sweep with this device should hold a `GPU` worker resource."""
    if device.startswith("cuda"):
        return True
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def start_client(opts: ClusterOptions, device: str, echo: Callable[[str], None] = print,
                 local_directory: str | Path | None = None) -> tuple[Any, Any]:
    """A connected `distributed.Client` for the options, and the cluster it started (None for
    --scheduler). Local workers keep their scratch space in `local_directory` (bench passes
    `<results>/cache/dask`, so nothing is written outside the results folder)."""
    import logging

    from distributed import Client, LocalCluster

    opts.check()
    cluster = None
    if opts.scheduler:
        try:
            client = Client(opts.scheduler, timeout="10s")
        except OSError as exc:
            raise BenchError(f"--scheduler {opts.scheduler}: cannot connect ({exc}); start one with "
                             "`dask scheduler` and `dask worker ADDRESS`") from None
    elif opts.cluster_file:
        cfg = load_cluster_file(opts.cluster_file)
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise BenchError("--cluster needs dask-jobqueue: pip install 'bench[slurm]'") from None
        cluster = SLURMCluster(**cfg["slurm"])
        cluster.scale(jobs=opts.workers or cfg["jobs"])
        client = Client(cluster)
        echo(f"SLURM cluster: {opts.workers or cfg['jobs']} job(s) requested; dashboard {cluster.dashboard_link}")
    else:
        threads = opts.threads or 1
        gpus = 0
        if wants_gpu(device):
            import torch

            gpus = torch.cuda.device_count()
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        _use_forkserver()
        import dask

        # Dask's statistical profiler samples the worker's stacks every 10 ms: measurable CPU on a
        # training loop, and nobody reads it here. Dask also starts workers with
        # MALLOC_TRIM_THRESHOLD_=65536, which pins glibc's mmap threshold at 128 KiB: every tensor
        # above it is a fresh mmap and page faults, and a CPU run took 1.5x as long as in the bench
        # process (benchmarks/sweep_scaling.py). Unset it: workers get glibc's defaults, like serial.
        dask.config.set({"distributed.worker.profile.enabled": False,
                         "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
        if local_directory is not None:  # the scheduler's and every worker's scratch space
            Path(local_directory).mkdir(parents=True, exist_ok=True)
            dask.config.set({"temporary-directory": str(Path(local_directory).resolve())})
        cluster = LocalCluster(n_workers=opts.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR,
                               resources={"GPU": 1} if gpus else None, env=env)
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
    return client, cluster


def stop_client(client: Any, cluster: Any) -> None:
    """Close a client from `start_client` and the cluster it started."""
    from distributed import LocalCluster

    try:
        client.close()
    finally:
        if cluster is not None:
            if isinstance(cluster, LocalCluster):
                _stop_workers_fast(cluster)
            cluster.close()


@contextlib.contextmanager
def open_client(opts: ClusterOptions, device: str, echo: Callable[[str], None] = print,
                local_directory: str | Path | None = None) -> Iterator[Any]:
    """A connected `distributed.Client` for the options; a cluster it started is closed on exit."""
    client, cluster = start_client(opts, device, echo, local_directory)
    try:
        yield client
    finally:
        stop_client(client, cluster)


class ClusterInBackground:
    """Starts the cluster in a thread while the caller goes on with its own set-up.

    Starting local workers (a fork server importing torch, then the processes) takes about 2 s, and
    opening the MLflow store and reconciling it with the records about as long: `bench run` and
    `bench tune` do both at once. `client()` waits for the cluster (and raises what starting it
    raised); `close()` waits for a start still under way and stops whatever was started.
    """

    def __init__(self, opts: ClusterOptions, device: str, echo: Callable[[str], None] = print,
                 local_directory: str | Path | None = None) -> None:
        self._out: tuple[Any, Any] | None = None
        self._error: BaseException | None = None
        self._closed = False

        def start() -> None:
            try:
                self._out = start_client(opts, device, echo, local_directory)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller in client()
                self._error = exc

        self._thread = threading.Thread(target=start, name="bench-cluster-start", daemon=True)
        self._thread.start()

    def client(self) -> Any:
        """The connected client, once the cluster is up."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._out is not None
        return self._out[0]

    def close(self) -> None:
        """Stop what was started (waiting for a start under way first); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._thread.join()
        if self._out is not None:
            stop_client(*self._out)

    def __enter__(self) -> ClusterInBackground:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


PRELOAD = ["distributed", "torch", "torch._dynamo", "torch.optim", "bench.runner", "bench.distributed"]


def _use_forkserver() -> None:
    """Start local workers by forking a server that imported torch and bench once.

    With the default `spawn`, every worker process imports torch (and torch._dynamo, which the
    first optimizer pulls in) by itself: seconds of CPU per worker, and a worker that imported
    torch takes the nanny's full 4 s timeout to exit. A fork server pays the imports once, starts
    from a clean process (no client threads, MLflow connections or CUDA state are inherited) and
    its children exit at once. Where `forkserver` does not exist (Windows), spawn is kept.
    """
    import multiprocessing

    import dask

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})  # restarts use it too
    from distributed.utils import get_mp_context

    get_mp_context().set_forkserver_preload(PRELOAD)  # modules failing to import are skipped


def _stop_workers_fast(cluster: Any, grace_s: float = 1.0) -> None:
    """Stop local worker processes with a short grace period (a worker that imported torch takes the
    nanny's full 4 s timeout to exit by itself; records are already written, nothing is lost)."""
    import asyncio

    async def stop(nannies: list[Any]) -> None:
        await asyncio.gather(*(n.close(timeout=grace_s) for n in nannies if hasattr(n, "close")),
                             return_exceptions=True)

    with contextlib.suppress(Exception):
        cluster.sync(stop, list(cluster.workers.values()))


def task_resources(client: Any, device: str) -> dict[str, int] | None:
    """{'GPU': 1} when runs want a GPU and the workers advertise GPU resources; None otherwise."""
    if not device.startswith("cuda") and device != "auto":
        return None
    workers = _workers(client)
    if any(w.get("resources", {}).get("GPU") for w in workers.values()):
        return {"GPU": 1}
    if device.startswith("cuda"):
        raise BenchError(f"device '{device}' wants a GPU but no worker advertises one; start workers with "
                         "`dask worker ADDRESS --resources GPU=1` (one per GPU, CUDA_VISIBLE_DEVICES set)")
    return None


def _workers(client: Any) -> dict[str, Any]:
    """Every worker the scheduler knows (scheduler_info lists only a few unless asked for all)."""
    try:
        return client.scheduler_info(n_workers=-1).get("workers", {})
    except TypeError:  # older distributed: no n_workers argument, lists them all
        return client.scheduler_info().get("workers", {})


# ----------------------------------------------------------------------------- worker side

_STATE: dict[str, Any] = {"data": OrderedDict(), "splits": {}, "runners": {}, "setup": None}
_STATE_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class WorkerContext:
    """What a worker needs to run a run of the sweep like the client would have."""

    sweep: Sweep
    results: str  # absolute path of the shared results folder
    tracking_uri: str | None
    parent_run_id: str | None
    force: bool
    invocation_started: str  # ISO time (UTC, seconds) the invocation began
    plugin_roots: tuple[str, ...]
    threads: int | None = None

    @property
    def token(self) -> str:
        """Identifies the invocation (one runner per invocation per worker)."""
        return f"{self.sweep.name}|{self.results}|{self.parent_run_id}|{self.invocation_started}"


def user_plugin_roots() -> tuple[str, ...]:
    """The user plugin roots this process has imported (--plugins, BENCH_PLUGIN_PATH, [tool.bench]), for
    the workers to import the same ones (built-ins and entry points they find by themselves)."""
    from bench import registry

    registry.load_plugins()
    done = getattr(registry, "_ROOTS_DONE", set())
    return tuple(sorted({str(Path(folder).parent) for folder in done}))


MMAP_THRESHOLD = 32 << 20  # glibc's largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)


def relax_malloc_trim() -> bool:
    """Undo a small MALLOC_TRIM_THRESHOLD_ in this process (what `dask worker` sets by default).

    With that variable set, glibc stops raising its mmap threshold: every allocation above 128 KiB
    (most tensors) is mmapped and unmapped each time, and a CPU training step pays the page faults
    (a run took 1.5x as long). For workers bench did not start (`dask worker`, SLURM) the variable
    was read before any bench code ran, so this sets glibc's thresholds with mallopt instead: mmap
    above 32 MiB, trim above 64 MiB, the values glibc's own adaptive rule settles at. Set
    BENCH_MALLOC_TRIM=keep to keep Dask's. Returns True when it changed something.
    """
    value = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    if value is None or os.environ.get("BENCH_MALLOC_TRIM") == "keep":
        return False
    try:
        if int(value) >= 2 * MMAP_THRESHOLD:
            return False
    except ValueError:
        pass
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, TypeError, AttributeError):  # not glibc (macOS, musl): nothing to undo
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold, 2 * MMAP_THRESHOLD))


def _setup_worker(plugin_roots: tuple[str, ...], threads: int | None) -> None:
    """Import the submitting process's user plugin roots here and apply --threads (once per process)."""
    if _STATE["setup"] == (plugin_roots, threads):
        return
    relax_malloc_trim()
    from bench.registry import load_plugins

    load_plugins(plugin_roots, asked_by="the plugin folders of the submitting bench process")
    if threads:
        import torch

        torch.set_num_threads(threads)
    _STATE["setup"] = (plugin_roots, threads)


def worker_device(device: str) -> Any:
    """The torch device a run uses on this worker (see the module docstring for `auto`)."""
    import torch

    from bench.method import resolve_device

    if device in ("auto", "cuda") and torch.cuda.is_available():
        if os.environ.get("CUDA_VISIBLE_DEVICES"):
            return torch.device("cuda:0")
        name = _worker_name()
        try:
            index = int(str(name).rsplit("-", 1)[-1])
        except ValueError:
            index = 0
        return torch.device(f"cuda:{index % torch.cuda.device_count()}")
    return resolve_device(device)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "0"


def _emit(msg: dict[str, Any]) -> None:
    with contextlib.suppress(ImportError, ValueError):
        from distributed import get_worker

        get_worker().log_event(PROGRESS_TOPIC, msg)


def _cached_data(spec: RunSpec, cache_root: Path) -> Any:
    """The dataset of a spec, loaded once per process (a small LRU); load errors are remembered too."""
    from bench.runner import load_dataset

    key = json.dumps([spec.dataset, spec.dataset_params], sort_keys=True, default=str)
    with _STATE_LOCK:
        cache: OrderedDict = _STATE["data"]
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        data = load_dataset(spec, cache_root)  # a failure is not cached: the files may appear later
        cache[key] = data
        while len(cache) > DATA_CACHE_SIZE:
            old, _ = cache.popitem(last=False)
            _STATE["splits"] = {k: v for k, v in _STATE["splits"].items() if k[0] != old}
        return data


def _begin(token: str) -> None:
    """A new invocation on a long-lived worker starts with empty caches (files may have changed)."""
    with _STATE_LOCK:
        if _STATE.get("token") != token:
            _STATE["data"], _STATE["splits"], _STATE["token"] = OrderedDict(), {}, token


def _cached_split(spec: RunSpec, data: Any, cache_root: Path) -> Any:
    from bench.splits import SplitSpec, get_split

    dkey = json.dumps([spec.dataset, spec.dataset_params], sort_keys=True, default=str)
    key = (dkey, json.dumps(spec.split, sort_keys=True, default=str))
    with _STATE_LOCK:
        if key not in _STATE["splits"]:
            _STATE["splits"][key] = get_split(data, SplitSpec(**spec.split), cache_root)
        return _STATE["splits"][key]


def _runner_for(ctx: WorkerContext) -> Any:
    """One runner per invocation per worker process (tracker and environment made once)."""
    from bench.runner import Runner

    class WorkerRunner(Runner):
        """The serial runner's `run_spec`, with per-process data and split caches."""

        def _data_for(self, spec: RunSpec) -> Any:
            return _cached_data(spec, self.cache_root)

        def _split_for(self, data: Any, spec: RunSpec) -> Any:
            return _cached_split(spec, data, self.cache_root)

    with _STATE_LOCK:
        runner = _STATE["runners"].get(ctx.token)
        if runner is None:
            tracker = None
            if ctx.tracking_uri:
                from bench.tracking import MlflowTracker

                tracker = RetryingTracker(MlflowTracker(worker_tracking_uri(ctx.tracking_uri), ctx.sweep.name,
                                                        Path(ctx.results) / "mlartifacts"))
                tracker.inner.parent_id = ctx.parent_run_id
            runner = WorkerRunner(ctx.sweep, Path(ctx.results), tracker=tracker, force=ctx.force,
                                  show_progress=False, echo=lambda _line: None)
            runner.device = worker_device(ctx.sweep.device)
            _STATE["runners"] = {ctx.token: runner}  # one invocation at a time per process
        return runner


def _finished_here(rec: dict[str, Any] | None, ctx: WorkerContext) -> bool:
    """An ok record that this invocation must not redo (with --force: one written since it began)."""
    if rec is None or rec.get("status") != "ok":
        return False
    return not ctx.force or str(rec.get("started", "")) >= ctx.invocation_started


def run_task(ctx: WorkerContext, spec: RunSpec) -> dict[str, Any]:
    """Dask task: run one spec to a written record, unless an ok record for it exists already.

    Returns a small summary (status, metrics, reason, seconds, worker) for the client's progress.
    """
    from filelock import FileLock

    _setup_worker(ctx.plugin_roots, ctx.threads)
    _begin(ctx.token)
    path = record_path(Path(ctx.results), ctx.sweep.name, spec.key)
    worker = _worker_name()
    rec = read_record(path)
    if not _finished_here(rec, ctx):
        lock_dir = path.parent.parent / ".run-locks"  # beside runs/, so runs/ holds records only
        lock_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_dir / f"{spec.key}.lock")):  # another process on this key: wait for it
            rec = read_record(path)
            if not _finished_here(rec, ctx):
                _emit({"event": "start", "key": spec.key, "worker": worker})
                rec = _runner_for(ctx).run_spec(spec)
                return _summary(rec, worker, reused=False)
    return _summary(rec, worker, reused=True)


def _summary(rec: dict[str, Any], worker: str, reused: bool) -> dict[str, Any]:
    return {"key": rec["key"], "status": rec["status"], "reason": rec.get("reason"),
            "metrics": {k: rec.get("metrics", {}).get(k) for k in ("map_i2t", "map_t2i")},
            "total_s": rec.get("timings", {}).get("total_s", 0.0), "worker": worker, "reused": reused}


# ----------------------------------------------------------------------------- MLflow from many processes


def worker_tracking_uri(uri: str) -> str:
    """The tracking URI a worker uses: an embedded sqlite store gets a long busy timeout."""
    if uri.startswith("sqlite:") and "timeout=" not in uri:
        return f"{uri}{'&' if '?' in uri else '?'}timeout={SQLITE_TIMEOUT_S}"
    return uri


def _transient(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(s in text for s in ("database is locked", "database table is locked", "busy",
                                   "deadlock", "could not serialize", "connection reset", "temporarily"))


class RetryingTracker:
    """Wraps a tracker: calls failing with a transient store error (sqlite busy, deadlock) are retried."""

    enabled = True

    def __init__(self, inner: Any, attempts: int = 8, base_delay: float = 0.2) -> None:
        self.inner = inner
        self.attempts = attempts
        self.base_delay = base_delay

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(self.attempts):
                try:
                    return target(*args, **kwargs)
                except Exception as exc:
                    if attempt == self.attempts - 1 or not _transient(exc):
                        raise
                    time.sleep(self.base_delay * 2 ** attempt * (0.5 + random.random()))
            return None

        return call


# ----------------------------------------------------------------------------- client side


class ProgressBoard:
    """Runs done / running / failed across workers, printed as one line per event."""

    def __init__(self, total: int, echo: Callable[[str], None]) -> None:
        self.total, self.echo = total, echo
        self.done = self.failed = 0
        self.running: set[str] = set()
        self.lock = threading.Lock()

    def counts(self) -> str:
        """The progress prefix."""
        return (f"[{self.done + self.failed}/{self.total} done, {len(self.running)} running, "
                f"{self.failed} failed]")

    def on_event(self, event: Any) -> None:
        """Handler of the workers' progress topic: (timestamp, msg)."""
        msg = event[1] if isinstance(event, tuple) else event
        if isinstance(msg, dict) and msg.get("event") == "start":
            with self.lock:
                self.running.add(msg["key"])

    def finished(self, key: str, ok: bool, line: str) -> None:
        """One run ended (ok, failed, or lost with its worker)."""
        with self.lock:
            self.running.discard(key)
            if ok:
                self.done += 1
            else:
                self.failed += 1
            self.echo(f"{self.counts()} {line}")


def run_distributed(sweep: Sweep, results: Path, client: Any, tracker: Any = None, tracking_uri: str | None = None,
                    force: bool = False, threads: int | None = None,
                    echo: Callable[[str], None] = print) -> Any:
    """Run every pending spec of `sweep` on the Dask cluster of `client`; returns a SweepSummary."""
    from distributed import as_completed

    from bench.runner import Runner, SweepSummary
    from bench.tracking import NullTracker

    tracker = tracker or NullTracker()
    results = Path(results).resolve()
    summary = SweepSummary(total=len(sweep.specs), skipped_datasets=dict(sweep.skipped))
    for label, reason in sweep.skipped.items():
        echo(f"skipped dataset {label}: {reason}")
    todo = Runner(sweep, results, force=force).pending()
    skipped_runs = sum(s.dataset_label in sweep.skipped for s in sweep.specs)
    summary.done_before = summary.total - len(todo) - skipped_runs
    if summary.done_before:
        echo(f"{summary.done_before} of {summary.total} runs already finished; skipping them (--force reruns)")
    if not todo:
        return summary
    resources = task_resources(client, sweep.device)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    from bench.runner import git_commit

    commit = git_commit()
    tracker.start_parent(f"{sweep.name} {datetime.now(UTC):%Y-%m-%d %H:%M:%S}",
                         {"sweep": sweep.name, "sweep_file": str(sweep.path),
                          "git_commit": commit.removesuffix("-dirty"),
                          "git_dirty": str(commit.endswith("-dirty")).lower(),
                          "bench.role": "invocation", "bench.workers": str(_n_workers(client))})
    ctx = WorkerContext(sweep=sweep, results=str(results),
                        tracking_uri=tracking_uri if getattr(tracker, "enabled", False) else None,
                        parent_run_id=getattr(tracker, "parent_id", None), force=force,
                        invocation_started=started, plugin_roots=user_plugin_roots(),
                        threads=threads)
    echo(f"sweep {sweep.name}: {len(todo)} runs on {_n_workers(client)} Dask worker(s)"
         + (f" with resources {resources}" if resources else ""))
    board = ProgressBoard(len(todo), echo)
    client.subscribe_topic(PROGRESS_TOPIC, board.on_event)
    ctx_future = client.scatter(ctx, broadcast=True, hash=False)
    futures = {}
    for spec in todo:
        fut = client.submit(run_task, ctx_future, spec, key=f"bench-run-{sweep.name}-{spec.key}-{started}",
                            resources=resources, pure=False)
        futures[fut] = spec
    status = "FAILED"
    try:
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                out = fut.result()
            except Exception as exc:  # the task itself could not run (worker lost too often, ...)
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                summary.failed += 1
                summary.failures.append((spec.describe(), reason))
                board.finished(spec.key, False, f"LOST   {spec.describe()}: {reason}; no record written, "
                                                "the next invocation redoes it")
                continue
            where = f"worker {out['worker']}" + (", record already written" if out["reused"] else "")
            if out["status"] == "ok":
                summary.ok += 1
                m = out["metrics"]
                board.finished(spec.key, True, f"ok     {spec.describe()}: mAP i2t {m['map_i2t']:.4f} "
                                               f"t2i {m['map_t2i']:.4f} ({out['total_s']:.1f}s, {where})")
            else:
                summary.failed += 1
                summary.failures.append((spec.describe(), out["reason"]))
                board.finished(spec.key, False, f"FAILED {spec.describe()}: {out['reason']} ({where})")
        status = "FINISHED" if not summary.failed else "FAILED"
        orphans = close_orphans(tracker)
        if orphans:
            echo(f"marked {orphans} MLflow run(s) of workers lost after their record as KILLED")
    except KeyboardInterrupt:
        status = "KILLED"
        for fut in futures:
            fut.cancel()
        raise
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(PROGRESS_TOPIC)
        tracker.end_parent(status)
    return summary


def _n_workers(client: Any) -> int:
    return len(_workers(client))


def close_orphans(tracker: Any, status: str = "KILLED") -> int:
    """Mark child runs of this invocation still RUNNING (their worker died after writing the record, before
    closing the MLflow run) as `status`; returns how many. Called once every task has ended."""
    inner = getattr(tracker, "inner", tracker)
    client, parent = getattr(inner, "client", None), getattr(inner, "parent_id", None)
    if client is None or not parent:
        return 0
    runs = client.search_runs([inner.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}' and "
                              "attributes.status = 'RUNNING'", max_results=1000)
    for run in runs:
        client.set_terminated(run.info.run_id, status)
    return len(runs)


# ----------------------------------------------------------------------------- parallel tuning


@dataclasses.dataclass(frozen=True)
class TuneContext:
    """What a trial worker needs: where the study is and how to build the objective."""

    sweep: Sweep
    results: str
    storage: str | None  # RDB URL, or None for the sweep's journal file
    plugin_roots: tuple[str, ...]
    threads: int | None = None
    started: str = ""  # when the invocation began (a new one starts with empty worker caches)


def shares(trials: int, workers: int) -> list[int]:
    """Split `trials` into at most `workers` non-empty, near-equal shares (sum = trials)."""
    n = max(1, min(trials, workers))
    return [trials // n + (i < trials % n) for i in range(n)]


def tune_task(ctx: TuneContext, template: RunSpec, study_name: str, n_trials: int, seed: int,
              timeout: float | None) -> int:
    """Dask task: `n_trials` trials of one study on this worker; returns how many it ran."""
    import optuna

    from bench.registry import get_method
    from bench.tune import make_objective, make_pruner, storage_for

    _setup_worker(ctx.plugin_roots, ctx.threads)
    _begin(f"tune|{ctx.sweep.name}|{ctx.results}|{ctx.started}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cache_root = Path(ctx.results) / "cache"
    data = _cached_data(template, cache_root)
    split = _cached_split(template, data, cache_root)
    entry = get_method(template.method)
    study = optuna.load_study(study_name=study_name, storage=storage_for(Path(ctx.results), ctx.sweep.name,
                                                                         ctx.storage),
                              sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
                              pruner=make_pruner())
    objective = make_objective(entry, template, data, split, worker_device(ctx.sweep.device))
    before = len(study.trials)
    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(FloatingPointError, RuntimeError))
    return len(study.trials) - before


class TrialDispatcher:
    """Runs the trials of one study on the Dask cluster of `client`, one task per worker share."""

    def __init__(self, client: Any, sweep: Sweep, results: Path, storage: str | None,
                 threads: int | None = None) -> None:
        self.client = client
        self.workers = max(1, _n_workers(client))
        self.resources = task_resources(client, sweep.device)
        ctx = TuneContext(sweep=sweep, results=str(Path(results).resolve()), storage=storage,
                          plugin_roots=user_plugin_roots(), threads=threads,
                          started=datetime.now(UTC).isoformat(timespec="microseconds"))
        self.ctx = client.scatter(ctx, broadcast=True, hash=False)

    def optimize(self, template: RunSpec, study: Any, trials: int, timeout: float | None) -> None:
        """Add `trials` trials to `study` from the workers (and wait for them)."""
        from bench.tune import sampler_seed

        before = len(study.trials)
        futures = [self.client.submit(tune_task, self.ctx, template, study.study_name, n,
                                      sampler_seed(template.seed, before, i), timeout, resources=self.resources,
                                      pure=False, key=f"bench-tune-{study.study_name}-{before}-{i}")
                   for i, n in enumerate(shares(trials, self.workers))]
        self.client.gather(futures)
