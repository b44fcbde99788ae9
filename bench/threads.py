"""How many CPU threads a run trains with, and why it is not simply torch's default.

torch uses as many threads as the machine has cores. On a machine shared with other work that
collapses: measured on 2 cores with one other busy process (`python benchmarks/threads.py`), one
`pgnn_con` run of the quick sweep took 25x as long with 2 threads as with 1 (407 s against 16 s);
the thread waiting at each parallel region's barrier needs a core that is not free. Making idle
OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) avoided the collapse but made the quiet machine
2x slower, and a lower GNU OpenMP spin count (GOMP_SPINCOUNT) only softened it.

So `--threads auto` (the default of `bench run` and `bench tune`) measures, before each run in the
`bench` process, how many cores are idle: the share of idle CPU time over `SAMPLE_S` seconds from
/proc/stat, times the cores this process may use. It trains with that many threads (at least 1):
all of them on a quiet machine, fewer beside other work. A competing process that starts during
a run is seen at the next run. Elsewhere than Linux, it uses the cores minus the 1-minute load
average. Dask workers always train with one thread each (`--workers N`).

The thread count changes results in about the 4th decimal (the order of floating-point sums), so
every record stores the count its run used, and the report says when the seeds of one row ran
with different counts. For bit-reproducible runs on a shared machine, pass `--threads N`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SAMPLE_S = 0.25


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """(idle + iowait, total) jiffies of all CPUs from /proc/stat, or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in fields]
    except (OSError, IndexError, ValueError):
        return None
    return values[3] + (values[4] if len(values) > 4 else 0), sum(values[:8])


def idle_cores(sample_s: float = SAMPLE_S) -> float | None:
    """How many of the machine's cores were idle over the next `sample_s` seconds (None where unknown)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(sample_s)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    share = (second[0] - first[0]) / (second[1] - first[1])
    return share * (os.cpu_count() or 1)


def auto_threads(sample_s: float = SAMPLE_S) -> int:
    """Threads for the next run: the idle cores this process may use, at least 1 (see the module)."""
    cores = usable_cores()
    idle = idle_cores(sample_s)
    if idle is None:
        try:
            idle = cores - os.getloadavg()[0]
        except (AttributeError, OSError):
            return cores
    return max(1, min(cores, int(idle + 0.25)))


def busy_note() -> str | None:
    """One line when the machine is busier than its cores (1-minute load average), else None."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cores = usable_cores()
    if load <= cores:
        return None
    return (f"note: the machine is busy (load average {load:.1f} on {cores} cores); with --threads auto each run "
            "uses the cores that are idle when it starts (see Threads in the manual's page on runs)")
