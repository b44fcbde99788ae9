"""What an invocation checks before anything is written, and what it holds while it runs.

Bad input must cost nothing: `bench run` and `bench tune` check the results folder, the device,
every method's parameters on that device, every pending dataset (it must be available, load, and
split into non-empty parts) before the lock, the store or any cache is touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.data import CrossModalData
from bench.errors import BenchError
from bench.method import resolve_device
from bench.params import build
from bench.registry import get_method
from bench.run import load_dataset
from bench.spec import RunSpec
from bench.splits import SplitSpec, compute_split
from bench.sweep import Sweep


def check_results_folder(root: Path) -> None:
    """The results folder must be a folder (or not exist yet) whose path works; nothing is created here."""
    if "\x00" in str(root):
        raise BenchError("--results: the path contains a NUL character")
    if root.exists() and not root.is_dir():
        raise BenchError(f"--results: {root} is a file, not a folder; pass a folder (it is created if absent)")
    parent = next((p for p in [root, *root.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise BenchError(f"--results: {parent} is a file, so {root} cannot be created; pass another folder")


def keep_scratch_inside(root: Path) -> None:
    """Scratch folders of libraries go under <results>/cache instead of the system's temporary folder:
    torch's compile cache (created as soon as torch._dynamo is imported, which the first optimizer
    step does) unless TORCHINDUCTOR_CACHE_DIR says otherwise. Dask's goes there too (`dask_dir`)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str((root / "cache" / "torchinductor").resolve()))


def dask_dir(root: Path) -> Path:
    """Where local Dask workers keep their scratch space: inside the results folder."""
    return root / "cache" / "dask"


def sweep_lock(out: Path, root: Path, sweep: str) -> Any:
    """The per-sweep lock (acquired); a second invocation of the same sweep is refused."""
    from filelock import FileLock, Timeout

    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BenchError(f"another `bench run` is already running sweep '{sweep}' in {root} "
                         f"(lock {out / '.lock'}); wait for it or use another --results folder") from None
    return lock


def check_devices(sweep: Sweep, specs: list[RunSpec]) -> None:
    """Each method's parameters must be able to run on the sweep's device (fp16 autocast needs CUDA,
    ...): `Method.check_device`, once per distinct (method, parameters). Raises BenchError."""
    device = resolve_device(sweep.device)
    seen: set[str] = set()
    for spec in specs:
        key = json.dumps([spec.method, spec.params], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        entry = get_method(spec.method)
        try:
            entry.cls(build(entry.cls.Params, spec.params, spec.method)).check_device(device)
        except BenchError as exc:
            raise BenchError(f"{sweep.path}: {spec.method_label}: {exc}") from None


def _load_for_preflight(sweep: Sweep, first: RunSpec, cache_root: Path) -> CrossModalData:
    try:
        return load_dataset(first, cache_root)
    except BenchError as exc:
        raise BenchError(f"{sweep.path}: {exc}; fix it, or mark the dataset `optional: true` to skip it when "
                         "absent") from None
    except MemoryError as exc:
        raise BenchError(f"{sweep.path}: dataset '{first.dataset_label}' does not fit in memory ({exc}); "
                         "use smaller dataset parameters") from None
    except (ValueError, OverflowError) as exc:
        raise BenchError(f"{sweep.path}: dataset '{first.dataset_label}' cannot be built with its parameters "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from None


def preflight(sweep: Sweep, specs: list[RunSpec], cache_root: Path) -> tuple[RunSpec, CrossModalData] | None:
    """Check, before anything is written or trained, what would otherwise fail only at run time.

    Every dataset of `specs` must be available and load, and every split spec must leave non-empty
    train and test parts (and a 'db' split where `retrieval: db` asks for one). Splits are computed
    here without writing the cache. Raises BenchError naming the dataset and the fix. Returns the
    last dataset loaded (with a spec of it), for the first runs to reuse.
    """
    check_devices(sweep, specs)
    by_data: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_data.setdefault(spec.data_key, []).append(spec)
    last = None
    for group in by_data.values():
        first = group[0]
        data = _load_for_preflight(sweep, first, cache_root)
        for split_spec in {json.dumps(s.split, sort_keys=True) for s in group}:
            try:
                compute_split(data, SplitSpec(**json.loads(split_spec)))
            except BenchError as exc:
                raise BenchError(f"{sweep.path}: dataset '{first.dataset_label}': {exc}") from None
        last = (first, data)
    return last
