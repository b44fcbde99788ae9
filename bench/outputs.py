"""Checks of the paths a command will write, made before it writes anything (one-line BenchErrors).

`bench report -o FILE` and `--figures DIR` call `check_outputs(FILE, DIR)` first: a report that
cannot be written whole is refused before a figure is drawn, so a bad path never leaves a
half-written report. What is refused: an empty path, a NUL character, a name too long for the file
system, a path under a file, a dangling symbolic link or a link loop anywhere on the path, a
folder where a file is wanted (and a file where a folder is wanted), a FIFO or device as the output
file (writing would block or replace it), a folder one cannot write into, and the same path for both.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from bench.errors import BenchError
from bench.params import short

MAX_PATH = 4000
MAX_NAME_BYTES = 255


def _basic(path: str | Path, option: str) -> Path:
    text = str(path)
    if not text.strip():
        raise BenchError(f"{option}: the path is empty; name a file or folder")
    if "\x00" in text:
        raise BenchError(f"{option}: the path contains a NUL character")
    full = Path(os.path.abspath(text))
    if len(str(full)) > MAX_PATH or any(len(part.encode()) > MAX_NAME_BYTES for part in full.parts):
        raise BenchError(f"{option}: {short(text)} is too long a path (a name over {MAX_NAME_BYTES} bytes?)")
    return full


def _stat(part: Path, option: str) -> os.stat_result | None:
    """stat() following links; None when `part` does not exist at all; refuses dangling links and loops."""
    if not os.path.lexists(part):
        return None
    try:
        return os.stat(part)
    except FileNotFoundError:
        raise BenchError(f"{option}: {part} is a symbolic link to {os.readlink(part)}, which does not exist; "
                         "remove the link or pass another path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BenchError(f"{option}: {part} is a symbolic link loop; fix the link or pass another path") from None
        raise BenchError(f"{option}: cannot use {part} ({exc.strerror}); pass another path") from None


def _check_parents(full: Path, option: str) -> None:
    """Every existing folder above `full` is a folder; the nearest one is writable."""
    nearest = None
    for part in reversed(full.parents):
        info = _stat(part, option)
        if info is None:
            break
        if not stat.S_ISDIR(info.st_mode):
            raise BenchError(f"{option}: {part} is a file, so {full} cannot be created under it; pass another path")
        nearest = part
    if nearest is None or not os.access(nearest, os.W_OK | os.X_OK):
        raise BenchError(f"{option}: cannot write into {nearest or full.parent} (permission denied); pass a path "
                         "you can write to")


def check_output_file(path: str | Path, option: str = "-o/--output") -> Path:
    """`path` can be written as a regular file (created, or replaced atomically); returns it absolute."""
    full = _basic(path, option)
    _check_parents(full, option)
    info = _stat(full, option)
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise BenchError(f"{option}: {full} is a folder; pass a file name (e.g. {full / 'report.md'})")
        if not stat.S_ISREG(info.st_mode):
            raise BenchError(f"{option}: {full} is not a regular file (a pipe or device?); pass a file name")
    return full


def check_output_folder(path: str | Path, option: str = "--figures") -> Path:
    """`path` is a folder one can write into, or can be created; returns it absolute."""
    full = _basic(path, option)
    _check_parents(full, option)
    info = _stat(full, option)
    if info is not None:
        if not stat.S_ISDIR(info.st_mode):
            raise BenchError(f"{option}: {full} is a file, not a folder; pass a folder (it is created if absent)")
        if not os.access(full, os.W_OK | os.X_OK):
            raise BenchError(f"{option}: cannot write into {full} (permission denied); pass another folder")
    return full


def check_outputs(output: str | Path | None, figures: str | Path | None) -> None:
    """The checks of `bench report`'s outputs, together: each path alone, and -o not the figures folder."""
    out = check_output_file(output) if output is not None else None
    fig = check_output_folder(figures) if figures is not None else None
    if out is not None and fig is not None and out == fig:
        raise BenchError(f"-o/--output {out} is also the --figures folder; pass another file")
