"""What a run records about the process that ran it: versions, host, device, threads, commit, memory."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch


def git_commit() -> str:
    """HEAD commit of the project checkout (suffixed '-dirty' with uncommitted changes), or ''."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}-dirty" if head and dirty else head


def commit_tags(commit: str) -> dict[str, str]:
    """MLflow tags of a commit string from `git_commit`: the commit and whether the tree was dirty
    ('unknown' outside a git checkout, where there is no commit to be dirty against)."""
    if not commit:
        return {"git_commit": "", "git_dirty": "unknown"}
    return {"git_commit": commit.removesuffix("-dirty"), "git_dirty": str(commit.endswith("-dirty")).lower()}


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, host, device, torch threads and git commit of this process, for the record."""
    env = {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "platform": platform.platform(), "host": platform.node(), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": str(device),
        "git_commit": git_commit(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory so far, in MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def current_rss_mb() -> float | None:
    """This process's resident memory now, in MiB (Linux; None elsewhere)."""
    try:
        resident = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Reset this process's resident-memory high-water mark to its current level (Linux >= 4.0:
    `5` written to /proc/self/clear_refs), so that `peak_rss_mb` afterwards is the peak of what
    follows. False where it cannot be reset (the peak then covers the whole process so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class RunMemory:
    """The memory a run itself used: `start()` before it, `fields()` after it.

    Where the process's high-water mark can be reset (Linux), `peak_rss_mb` is the run's own peak
    resident memory and `peak_delta_mb` its increase over the level before the run; elsewhere only
    the process's peak so far is known (`peak_scope` says which)."""

    def __init__(self) -> None:
        self.before: float | None = None
        self.scope = "process"

    def start(self) -> None:
        """Note the level before the run and reset the high-water mark."""
        self.before = current_rss_mb()
        self.scope = "run" if self.before is not None and reset_peak_rss() else "process"

    def fields(self) -> dict[str, Any]:
        """The record's memory fields."""
        out: dict[str, Any] = {"peak_rss_mb": peak_rss_mb(), "peak_scope": self.scope}
        if self.scope == "run" and self.before is not None:
            out["rss_before_mb"] = self.before
            out["peak_delta_mb"] = max(0.0, out["peak_rss_mb"] - self.before)
        return out
