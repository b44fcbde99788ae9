"""Result records: one JSON file per run key, written atomically.

A record exists only once its run has ended (status "ok" or "failed"); a run killed midway
leaves no record, so a rerun redoes it. Readers never see a half-written file because records
are written to a temporary file in the same folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as fh:
            fh.write(text)
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


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when the file is absent or unreadable (treated as not finished)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") in ("ok", "failed") else None


def iter_records(results: Path, sweeps: list[str] | None = None) -> list[dict[str, Any]]:
    """Every readable record under `results/<sweep>/runs/`, for the given sweeps or all."""
    results = Path(results)
    if not results.exists():
        return []
    names = sweeps or sorted(p.name for p in results.iterdir() if (p / "runs").is_dir())
    out = []
    for name in names:
        for path in sorted(runs_dir(results, name).glob("[!.]*.json")):  # not .tmp-* leftovers
            rec = read_record(path)
            if rec is not None:
                out.append(rec)
    return out
