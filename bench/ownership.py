"""Which process owns an MLflow run or an Optuna trial, and whether that process is provably gone.

Every run and trial the harness opens carries `bench.owner = host|pid|process start time`. A
later invocation closes a run (or fails a trial) left open only when its owner is on this host
and that process no longer exists, or the pid now belongs to a process started at another time.
Unknown owners and other hosts are never called dead.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

OWNER_TAG = "bench.owner"


def _process_start(pid: int) -> str:
    """Start time of process `pid` in clock ticks since boot (Linux), '' where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 counted from the pid, 20 after the ')' field


def owner_tag() -> str:
    """This process as 'host|pid|start time', recorded on every run it opens."""
    return f"{platform.node()}|{os.getpid()}|{_process_start(os.getpid())}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when the owner is provably gone: same host, and that pid is not running or is
    another process (a different start time)."""
    if not owner or owner.count("|") != 2:
        return False
    host, pid_text, start = owner.split("|")
    if host != platform.node() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return start != _process_start(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    now = _process_start(pid)
    return bool(start and now and now != start)
