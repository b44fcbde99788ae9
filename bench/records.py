"""Result records: one JSON file per run key, written atomically.

A record exists only once its run has ended (status "ok" or "failed"); a run killed midway
leaves no record, so a rerun redoes it. Readers never see a half-written file because records
are written to a temporary file in the same folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_UMASK = os.umask(0)
os.umask(_UMASK)

RECORD_VERSION = 1


def runs_dir(results: Path, sweep: str) -> Path:
    """Folder holding the records of a sweep."""
    return Path(results) / sweep / "runs"


def record_path(results: Path, sweep: str, key: str) -> Path:
    """Path of the record of one run key."""
    return runs_dir(results, sweep) / f"{key}.json"


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write `text` (str or bytes) to `path` via a temporary file and an atomic rename (fsynced)."""
    data = text.encode() if isinstance(text, str) else text
    write_atomic_with(path, lambda fh: fh.write(data))


def write_atomic_with(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call `write(binary file)` on a temporary file in `path`'s folder, fsync, then rename it to
    `path`: a reader sees the old file or the whole new one, never a part (a kill leaves a `.tmp-*`
    file that `clean_stale_temporaries` removes). The one atomic writer of the harness."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Persist a finished record atomically."""
    record = {"record_version": RECORD_VERSION, **record}
    write_atomic(path, json.dumps(record, indent=1, sort_keys=True, default=_jsonable))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def record_problem(data: Any) -> str | None:
    """Why a parsed record cannot be used (missing fields, wrong types), or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("status") not in ("ok", "failed"):
        return f"status {str(data.get('status'))[:40]!r} is not ok/failed"
    if not isinstance(data.get("key"), str):
        return "no 'key' string"
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return "no 'spec' mapping"
    for field, kind in (("sweep", str), ("dataset_label", str), ("method_label", str), ("seed", int)):
        if not isinstance(spec.get(field), kind) or isinstance(spec.get(field), bool):
            return f"spec.{field} is missing or not a {kind.__name__}"
    if data["status"] == "ok":
        metrics = data.get("metrics")
        if not isinstance(metrics, dict):
            return "an ok record without a 'metrics' mapping"
        for name in ("map_i2t", "map_t2i"):
            if not isinstance(metrics.get(name), (int, float)) or isinstance(metrics.get(name), bool):
                return f"metrics.{name} is missing or not a number"
    return None


def load_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None), or (None, why it is unusable); an absent file is (None, None)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__})"
    problem = record_problem(data)
    return (None, problem) if problem else (data, None)


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when the file is absent or unusable (treated as not finished)."""
    return load_record(path)[0]


def scan_records(results: Path, sweeps: list[str] | None = None
                 ) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """(every usable record, [(path, why) for each unusable one]) under `results/<sweep>/runs/`."""
    results = Path(results)
    if not results.is_dir():
        return [], []
    names = sweeps or sorted(p.name for p in results.iterdir() if (p / "runs").is_dir())
    out, skipped = [], []
    for name in names:
        for path in sorted(runs_dir(results, name).glob("[!.]*.json")):  # not .tmp-* leftovers
            rec, problem = load_record(path)
            if rec is not None:
                out.append(rec)
            elif problem:
                skipped.append((path, problem))
    return out, skipped


def iter_records(results: Path, sweeps: list[str] | None = None) -> list[dict[str, Any]]:
    """Every usable record under `results/<sweep>/runs/`, for the given sweeps or all."""
    return scan_records(results, sweeps)[0]


def clean_stale_temporaries(folder: Path) -> int:
    """Remove the `.tmp-*` files a kill during `write_atomic` left in `folder`; returns how many.

    Only call this while holding the lock of whoever writes there (the sweep lock for `runs/`).
    """
    removed = 0
    for path in Path(folder).glob(".tmp-*"):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
