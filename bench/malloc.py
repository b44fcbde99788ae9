"""glibc's allocator settings in Dask workers (CPU training speed)."""

from __future__ import annotations

import os

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
