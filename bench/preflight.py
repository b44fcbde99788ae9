"""What an invocation checks before anything is written, and what it holds while it runs.

Bad input must cost nothing: `bench run` and `bench tune` check the results folder, the device,
every method's parameters on that device, every pending dataset (it must be available, fit in
memory, load, and split into non-empty parts) and the memory of every model (`bench.memory`)
before the lock, the store or any cache is touched.

Every byte an invocation writes stays under the results folder (`bench.scratch`).
"""


from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.data import CrossModalData
from bench.errors import BenchError
from bench.memory import data_excess, enlarged, gib, machine_bytes, model_bytes, training_bytes
from bench.method import Method, resolve_device
from bench.outputs import check_output_folder
from bench.params import build
from bench.registry import get_dataset, get_method
from bench.run import load_dataset
from bench.scratch import keep_scratch_inside, scratch_dir, start_writing
from bench.spec import RunSpec
from bench.splits import SplitSpec, compute_split
from bench.sweep import Sweep
from bench.sweep_entries import get_dataset_params

__all__ = ["check_results_folder", "keep_scratch_inside", "scratch_dir", "start_writing", "sweep_lock", "preflight",
           "check_devices", "dask_dir"]


def check_results_folder(root: Path) -> None:
    """The results folder must be a folder (or not exist yet) that can be created and written; every
    existing part of its path must be a real folder (a dangling symlink or a symlink loop is refused).
    Nothing is created here (`bench.outputs.check_output_folder`)."""
    check_output_folder(root, "--results")


def dask_dir(root: Path) -> Path:
    """Where local Dask workers keep their scratch space: inside the results folder."""
    return root / "cache" / "dask"


def sweep_lock(out: Path, root: Path, sweep: str) -> Any:
    """The per-sweep lock (acquired); a second invocation of the same sweep is refused."""
    from filelock import FileLock, Timeout

    start_writing()
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BenchError(f"another `bench run` is already running sweep '{sweep}' in {root} "
                         f"(lock {out / '.lock'}); wait for it or use another --results folder") from None
    return lock


def _distinct_methods(specs: list[RunSpec]) -> Iterator[tuple[RunSpec, Method]]:
    """The first spec of each distinct (method, parameters) with its method built from them."""
    seen: set[str] = set()
    for spec in specs:
        key = json.dumps([spec.method, spec.params], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            entry = get_method(spec.method)
            yield spec, entry.cls(build(entry.cls.Params, spec.params, spec.method))


def check_devices(sweep: Sweep, specs: list[RunSpec]) -> None:
    """Each method's parameters must be able to run on the sweep's device (fp16 autocast needs CUDA,
    ...): `Method.check_device`, once per distinct (method, parameters). Raises BenchError."""
    device = resolve_device(sweep.device)
    for spec, method in _distinct_methods(specs):
        try:
            method.check_device(device)
        except BenchError as exc:
            raise BenchError(f"{sweep.path}: {spec.method_label}: {exc}") from None


def check_data_memory(sweep: Sweep, spec: RunSpec, available: int | None) -> None:
    """Refuse a dataset whose plugin estimates more memory (`estimate_bytes()`) than the machine has."""
    dcls = get_dataset(spec.dataset)
    excess = data_excess(dcls(get_dataset_params(dcls, spec.dataset_params)), available)
    if excess is not None:
        need, grown = excess
        raise BenchError(f"{sweep.path}: dataset '{spec.dataset_label}' {need}; use smaller dataset parameters"
                         + (f" ({grown})" if grown else ""))


def check_model_memory(sweep: Sweep, specs: list[RunSpec], data: CrossModalData, device: Any,
                       available: int | None) -> None:
    """Refuse a method whose model (built on the meta device, see `bench.memory`) would need more
    memory to train than the device has; once per distinct (method, parameters) on one dataset."""
    if not available:
        return
    for spec, method in _distinct_methods(specs):
        size = model_bytes(method, data, spec.seed)
        if size is not None and training_bytes(size) > available:
            grown = enlarged(type(method).Params, spec.params)
            raise BenchError(f"{sweep.path}: {spec.method_label} on dataset '{spec.dataset_label}': its model needs "
                             f"about {gib(training_bytes(size))} to train (parameters, gradients, optimizer state), "
                             f"more than the {gib(available)} of {getattr(device, 'type', 'cpu')} memory here; lower "
                             + (f"its size parameters ({grown})" if grown else "its size parameters"))


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

    Every dataset of `specs` must be available, fit in memory and load, every model must fit in the
    device's memory (`bench.memory`), and every split spec must leave non-empty
    train and test parts (and a 'db' split where `retrieval: db` asks for one). Splits are computed
    here without writing the cache. Raises BenchError naming the dataset and the fix. Returns the
    last dataset loaded (with a spec of it), for the first runs to reuse.
    """
    check_devices(sweep, specs)
    by_data: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_data.setdefault(spec.data_key, []).append(spec)
    device = resolve_device(sweep.device)
    available = machine_bytes(device)
    last = None
    for group in by_data.values():
        first = group[0]
        check_data_memory(sweep, first, machine_bytes())
        data = _load_for_preflight(sweep, first, cache_root)
        check_model_memory(sweep, group, data, device, available)
        for split_spec in {json.dumps(s.split, sort_keys=True) for s in group}:
            try:
                compute_split(data, SplitSpec(**json.loads(split_spec)))
            except BenchError as exc:
                raise BenchError(f"{sweep.path}: dataset '{first.dataset_label}': {exc}") from None
        last = (first, data)
    return last
