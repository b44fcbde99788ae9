"""Progress bars that stay quiet when output is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def interactive() -> bool:
    """True when stderr is a terminal (progress bars are shown only then)."""
    return sys.stderr.isatty()


def progress(iterable: Iterable, *, total: int | None = None, desc: str = "", enabled: bool = True,
             leave: bool = True) -> Any:
    """A tqdm bar over `iterable` when enabled and on a terminal, else the iterable itself."""
    if not (enabled and interactive()):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=leave, dynamic_ncols=True)
