"""Getting Dask workers: a LocalCluster of N processes, a running scheduler, or SLURM jobs.

`ClusterOptions` is what the command line asked for; `start_client` (or `ClusterInBackground`,
which starts it while the caller opens the MLflow store) returns a connected client. Local
workers are forked from a server that imported torch and bench once, keep their scratch space
under the results folder, and are stopped with a short grace period.

GPUs: with a CUDA device wanted, every task asks for the worker resource `GPU=1`, so a worker
that owns one GPU trains one run at a time (see `bench.tasks.worker_device` for which GPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.addresses import check_scheduler
from bench.errors import BenchError, ConfigError
from bench.params import check_number, short
from bench.readers import read_yaml
from bench.scratch import start_writing


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
        return bool(self.workers or self.scheduler is not None or self.cluster_file is not None)

    def check(self, probe: bool = True, results: Path | None = None) -> None:
        """One scale-out source at a time, each usable: a cluster file that parses, a scheduler address
        that is well formed and (with `probe`) answers within seconds, and for local workers a `results`
        folder whose path leaves room for their socket. Nothing is started or written."""
        given = [n for n, v in (("--workers", self.workers), ("--scheduler", self.scheduler),
                                ("--cluster", self.cluster_file)) if v is not None]
        if len(given) > 1 and not (given == ["--workers", "--cluster"]):
            raise BenchError(f"{' and '.join(given)} exclude each other: --workers N starts a local cluster, "
                             "--scheduler ADDRESS uses a running one, --cluster FILE starts one on SLURM "
                             "(with --workers N jobs)")
        if self.workers is not None:
            check_number(self.workers, "--workers", integer=True, low=1, high=MAX_WORKERS)
            if results is not None and self.cluster_file is None:
                check_socket_room(results)
        if self.threads is not None:
            check_number(self.threads, "--threads", integer=True, low=1, high=MAX_WORKERS)
        if self.scheduler is not None:
            if not self.scheduler.strip():
                raise BenchError("--scheduler: the address is empty; write tcp://HOST:8786 or leave the option out")
            if probe:
                check_scheduler(self.scheduler)
        if self.cluster_file is not None:
            load_cluster_file(self.cluster_file)  # a bad file is reported before anything is written
            if importlib.util.find_spec("dask_jobqueue") is None:
                raise BenchError("--cluster needs dask-jobqueue: pip install 'bench[slurm]'")


MAX_WORKERS = 1024  # local worker processes, SLURM jobs, threads: more is a typo
MAX_CORES = 4096
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
    path = Path(path)
    if not str(path).strip() or not path.exists():
        raise BenchError(f"--cluster {path}: no such file; write a YAML file with a 'slurm:' mapping "
                         "(see the scale-out page of the manual)")
    try:
        raw = read_yaml(path, "cluster file")  # the same strict reader as sweep files
    except ConfigError as exc:
        raise ConfigError(f"--cluster {exc}") from None
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
    for key in ("cores", "processes", "job_cpu"):
        if key in kwargs:
            kwargs[key] = _count(kwargs[key], f"--cluster {path}: slurm.{key}", 1, MAX_CORES)
    for key in ("memory", "job_mem"):
        if key in kwargs and not _is_size(kwargs[key]):
            raise BenchError(f"--cluster {path}: slurm.{key} must be a size such as 32GB, got "
                             f"{short(repr(kwargs[key]))}")
    out: dict[str, Any] = {"slurm": kwargs}
    for key, default, low, high in (("jobs", 1, 1, MAX_WORKERS), ("gpus_per_job", 0, 0, 64)):
        out[key] = _count(raw.get(key, default), f"--cluster {path}: {key}", low, high)
    if out["gpus_per_job"]:
        extra = list(kwargs.get("worker_extra_args") or [])
        extra += ["--resources", f"GPU={out['gpus_per_job']}"]
        kwargs["worker_extra_args"] = extra
    return out


def _count(value: Any, where: str, low: int, high: int) -> int:
    """An integer of a cluster file in [low, high], through the one number check (`check_number`)."""
    try:
        return int(check_number(value, where, integer=True, low=low, high=high))
    except ConfigError:
        raise BenchError(f"{where} must be an integer >= {low} (at most {high}), got {short(repr(value))}") from None


def _is_size(value: Any) -> bool:
    """A memory size dask understands (32GB, '4 GiB', or a positive byte count)."""
    from dask.utils import parse_bytes

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return False
    try:
        return 0 < parse_bytes(value) < 2**63
    except (ValueError, TypeError, OverflowError):
        return False


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
    from distributed import Client

    opts.check(probe=False)  # the command line probed the scheduler already
    cluster = None
    if opts.scheduler:
        try:
            client = Client(opts.scheduler, timeout="10s")
        except (OSError, ValueError) as exc:
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
        cluster, client = _local_cluster(opts, device, local_directory)
    return client, cluster


def _local_cluster(opts: ClusterOptions, device: str, local_directory: str | Path | None) -> tuple[Any, Any]:
    """A LocalCluster of `opts.workers` single-threaded worker processes (one GPU resource each when
    runs want a GPU) and its client."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    start_writing()  # the fork server's pymp-* folder and the workers' TMPDIR go under the results folder
    _short_socket_folder()
    threads = opts.threads or 1
    gpus = 0
    if wants_gpu(device):
        import torch

        gpus = torch.cuda.device_count()
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    _use_forkserver()
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
        return cluster, Client(cluster)
    except BaseException:
        cluster.close()
        raise


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


PRELOAD = ["distributed", "torch", "torch._dynamo", "torch.optim", "bench.tasks"]


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


UNIX_PATH_MAX = 107  # bytes of a Unix socket's path (Linux sun_path, less the final NUL)
SOCKET_TAIL = len("/pymp-12345678/listener-12345678")  # what multiprocessing adds to the temporary folder


_HELD_FOLDERS: list[int] = []  # descriptors behind /proc/self/fd/N socket folders (kept open for the process)


def _socket_room(folder: str | Path, tail: int = SOCKET_TAIL) -> bool:
    """Whether a Unix socket `tail` bytes below `folder` can be bound from here (absolute or relative
    name short enough, or, on Linux, the folder reachable as /proc/self/fd/N)."""
    absolute = os.path.abspath(folder)
    names = (absolute, os.path.relpath(absolute))
    return any(len(os.fsencode(n)) + tail <= UNIX_PATH_MAX for n in names) or os.path.isdir("/proc/self/fd")


def check_socket_room(results: Path) -> None:
    """Local workers need a fork-server socket under <results>/cache/tmp: refuse, before anything is
    written, a results folder whose path leaves no room for it (see `_short_socket_folder`)."""
    from bench.scratch import scratch_dir

    if not _socket_room(scratch_dir(results)):
        raise BenchError(f"--workers: the results folder's path is too long for the local workers' socket "
                         f"({len(os.fsencode(os.path.abspath(results)))} bytes; a Unix socket path holds at most "
                         f"{UNIX_PATH_MAX}); use a shorter --results path, or run bench from a folder near it")


def _short_socket_folder() -> None:
    """Make multiprocessing's temporary folder (<results>/cache/tmp/pymp-*, where the fork server's Unix
    socket lives) usable under a deep results folder: a socket path holds at most UNIX_PATH_MAX bytes.
    Only this process binds and connects to that socket (the fork server inherits it open), so the
    folder may be named relative to the current folder (bench never changes it) or, on Linux, as
    /proc/self/fd/N of a descriptor held open; the folder itself stays where it is, inside the results
    folder, and multiprocessing removes it at exit under its real name."""
    import multiprocessing.util as mp_util
    from multiprocessing import process

    config = process.current_process()._config
    folder = mp_util.get_temp_dir()  # created now (in <results>/cache/tmp); removed at exit by multiprocessing
    tail = SOCKET_TAIL - len("/pymp-12345678")
    for name in (folder, os.path.relpath(folder)):
        if len(os.fsencode(name)) + tail <= UNIX_PATH_MAX:
            config["tempdir"] = name
            return
    if not os.path.isdir("/proc/self/fd"):
        raise BenchError(f"--workers: the results folder's path is too long for the local workers' socket ({folder}); "
                         "use a shorter --results path")
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    _HELD_FOLDERS.append(fd)
    config["tempdir"] = f"/proc/self/fd/{fd}"


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
    if any(w.get("resources", {}).get("GPU") for w in workers(client).values()):
        return {"GPU": 1}
    if device.startswith("cuda"):
        raise BenchError(f"device '{device}' wants a GPU but no worker advertises one; start workers with "
                         "`dask worker ADDRESS --resources GPU=1` (one per GPU, CUDA_VISIBLE_DEVICES set)")
    return None


def workers(client: Any) -> dict[str, Any]:
    """Every worker the scheduler knows (scheduler_info lists only a few unless asked for all)."""
    try:
        return client.scheduler_info(n_workers=-1).get("workers", {})
    except TypeError:  # older distributed: no n_workers argument, lists them all
        return client.scheduler_info().get("workers", {})




def n_workers(client: Any) -> int:
    """How many workers the scheduler knows."""
    return len(workers(client))
