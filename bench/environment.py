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
    """MLflow tags of a commit string from `git_commit`: the commit and whether the tree was dirty."""
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
