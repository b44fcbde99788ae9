"""Every byte an invocation writes stays under its results folder.

`keep_scratch_inside(results)` (at the start of `bench run` / `bench tune`, nothing created) and
`start_writing()` (called by whatever writes first once the checks are over: the sweep lock, the
MLflow store, the Optuna storage, a local Dask cluster) make `<results>/cache/tmp` the temporary
folder of the process and of every process it starts (TMPDIR, TEMP, TMP), and point the caches of
torch's compiler (TORCHINDUCTOR_CACHE_DIR), matplotlib (MPLCONFIGDIR), triton (TRITON_HOME) and
CUDA's JIT (CUDA_CACHE_PATH) under `<results>/cache`. So MLflow's `db_init_lock-*` file, torch's
precompiled headers, the Dask fork server's `pymp-*` folder and compilers' temporary files land
inside the results folder, even when the process is killed. A cache variable the user set is kept
(MPLCONFIGDIR, TRITON_HOME, CUDA_CACHE_PATH); TMPDIR and TORCHINDUCTOR_CACHE_DIR are always replaced
(the promise is "nothing written outside the results folder").
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from bench.quiet import arm_log_file

_PENDING: dict[str, Any] = {}  # what `start_writing` does, set by keep_scratch_inside
_LOCK = threading.Lock()


def keep_scratch_inside(root: Path) -> None:
    """Prepare to keep every library's scratch and cache under <results>/cache; nothing is created
    here. Importing torch._dynamo (which the checks may do: any op on the meta device) creates
    torch's compile cache folder at once, so until `start_writing` that folder is the nearest existing
    folder of the results path (creating it is then a no-op). TORCHINDUCTOR_CACHE_DIR is always
    replaced: torch sets it itself (to $TMPDIR/torchinductor_<user>) once torch._dynamo is imported,
    so a value present here need not be the user's."""
    root = Path(os.path.abspath(root))
    _PENDING.clear()
    _PENDING.update(root=root)
    existing = next(p for p in (root, *root.parents) if p.is_dir())
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(existing)


def scratch_dir(root: Path) -> Path:
    """The temporary folder of an invocation writing into `root`."""
    return Path(os.path.abspath(root)) / "cache" / "tmp"


def start_writing() -> None:
    """Called by the first step that writes (the checks are over): create <results>/cache/tmp and make
    it the temporary folder (tempfile, and TMPDIR/TEMP/TMP for every process started from now on),
    and point the caches of torch's compiler, matplotlib (MPLCONFIGDIR, else ~/.cache/matplotlib),
    triton (TRITON_HOME) and CUDA's JIT under <results>/cache. A no-op before `keep_scratch_inside`
    and after the first call."""
    with _LOCK:  # the cluster starts in a thread while the main thread opens the store: both may call this
        root = _PENDING.pop("root", None)
        if root is None:
            return
        _start_writing(root)


def _start_writing(root: Path) -> None:
    cache = root / "cache"
    folder = scratch_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    for var in ("TMPDIR", "TEMP", "TMP"):
        os.environ[var] = str(folder)
    tempfile.tempdir = str(folder)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache / "torchinductor")
    for var, sub in (("MPLCONFIGDIR", "matplotlib"), ("TRITON_HOME", "triton"), ("CUDA_CACHE_PATH", "cuda")):
        os.environ.setdefault(var, str(cache / sub))
    arm_log_file(root)  # library warnings' details go to <results>/bench.log from now on
