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


MAX_RECORD_BYTES = 256 * 2**20  # a record holds curves and small artifacts: a few MB at most


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and all(_number(x) for x in v)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _mapping_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(check(x) for x in v.values())


def _is(kind: type) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, kind) and not isinstance(v, bool)


# What each field of a record must be when present (a record is written by `bench.run`; anything
# else was edited, truncated or comes from a foreign tool). A reader may rely on these types.
_TOP: dict[str, tuple[Callable[[Any], bool], str]] = {
    "record_version": (_integer, "an integer"),
    "key": (_is(str), "a string"),
    "reason": (_optional(_is(str)), "a string or null"),
    "traceback": (_optional(_is(str)), "a string or null"),
    "started": (_is(str), "a string"),
    "finished": (_is(str), "a string"),
    "position": (_integer, "an integer"),
    "timings": (_mapping_of(_optional(_number)), "a mapping of numbers"),
    "memory": (lambda v: isinstance(v, dict) and all(_optional(_number)(x) or (k == "peak_scope" and x in
                                                                                 ("run", "process"))
                                                      for k, x in v.items()),
               "a mapping of numbers (and peak_scope run/process)"),
    "invocation": (_is(dict), "a mapping"),
    "embeddings": (lambda v: isinstance(v, dict) and isinstance(v.get("file"), str) and _integer(v.get("items")),
                   "a mapping with the file and its item count"),
    "diagnostics": (lambda v: isinstance(v, dict) and all(_diagnostic(k, x) for k, x in v.items()),
                    "a mapping of numbers and per-label lists"),
    "cost": (_mapping_of(_optional(_number)), "a mapping of numbers"),
    "best_epoch": (_optional(_integer), "an integer or null"),
    "last_epoch": (_optional(_integer), "an integer or null"),
    "val_map": (_optional(_number), "a number or null"),
    "n_train": (_integer, "an integer"),
    "n_val": (_integer, "an integer"),
    "n_test": (_integer, "an integer"),
    "n_retrieval": (_integer, "an integer"),
    "mlflow_run_id": (_optional(_is(str)), "a string or null"),
    "environment": (_is(dict), "a mapping"),
    "data": (_is(dict), "a mapping"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(r, dict) and _integer(r.get("step"))
                                                       and all(_number(x) for x in r.values())
                                                       for r in v),
                "a list of {step: integer, name: number} rows"),
    "test_selected": (_optional(lambda v: isinstance(v, dict) and _number(v.get("map_avg"))),
                      "a mapping with a numeric map_avg, or null"),
    "artifacts": (_mapping_of(lambda a: _artifact_problem(a) is None), "a mapping of {data, shape, axis_labels}"),
}
_SPEC: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{k: (_is(str), "a string") for k in ("sweep", "dataset", "dataset_label", "method", "method_label", "family",
                                            "missing_policy", "code_version")},
    "seed": (_integer, "an integer"),
    "params": (_is(dict), "a mapping"),
    "dataset_params": (_is(dict), "a mapping"),
    "split": (_is(dict), "a mapping"),
    "missing": (_optional(_is(dict)), "a mapping or null"),
    "optional": (lambda v: isinstance(v, bool), "true/false"),
    "test_selected": (lambda v: isinstance(v, bool), "true/false"),
}
_SPLIT: dict[str, tuple[Callable[[Any], bool], str]] = {
    "val": (_number, "a number"), "test": (_number, "a number"), "seed": (_integer, "an integer"),
    "retrieval": (_is(str), "a string"),
}


def _diagnostic(name: str, value: Any) -> bool:
    """A diagnostics entry: a number, per-label numbers (None where no sampled item carries the
    label), or the label names."""
    if name == "label_names":
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    if isinstance(value, list):
        return all(x is None or _number(x) for x in value)
    return _number(value)


def _artifact_problem(art: Any) -> str | None:
    if not isinstance(art, dict):
        return "not a mapping"
    data = art.get("data")
    if not isinstance(data, list) or not all(_numbers(row) or _number(row) for row in data):
        return "data is not a list of numbers or of rows of numbers"
    if len({len(row) for row in data if isinstance(row, list)}) > 1:
        return "data rows differ in length"
    if not _optional(lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))(art.get("axis_labels")):
        return "axis_labels is not a list of strings"
    return None


def _fields_problem(doc: dict, rules: dict, prefix: str) -> str | None:
    for name, (check, what) in rules.items():
        if name in doc and not check(doc[name]):
            return f"{prefix}{name} is {type(doc[name]).__name__}, not {what}"
    return None


def _metrics_problem(metrics: Any) -> str | None:
    """Metrics hold numbers (NaN allowed: reported as such), PR curves and the 'undefined' reasons."""
    if not isinstance(metrics, dict):
        return f"metrics is {type(metrics).__name__}, not a mapping"
    for name, value in metrics.items():
        if name == "undefined":
            if not _mapping_of(_is(str))(value):
                return "metrics.undefined is not a mapping of reasons"
        elif name.startswith("pr_"):
            curve = value if isinstance(value, dict) else {"precision": None}
            lists = [curve[k] for k in ("precision", "recall") if k in curve]
            if not all(_numbers(x) for x in lists) or len({len(x) for x in lists}) > 1:
                return f"metrics.{name} is not a PR curve (equally long precision and recall lists of numbers)"
        elif not _number(value):
            return f"metrics.{name} is {type(value).__name__}, not a number"
    return None


def record_problem(data: Any) -> str | None:
    """Why a parsed record cannot be used (a missing field, a field of the wrong type), or None.

    Every field a reader uses is checked against the types `bench.run` writes (`_TOP`, `_SPEC`,
    `_SPLIT`, metrics, PR curves, history rows, artifacts), so a reader never meets a list where a
    mapping belongs. NaN and infinite metrics pass: the run produced them and a report shows them.
    """
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
    problem = (_fields_problem(data, _TOP, "") or _fields_problem(spec, _SPEC, "spec.")
               or (_fields_problem(spec["split"], _SPLIT, "spec.split.") if isinstance(spec.get("split"), dict)
                   else None))
    if problem:
        return problem
    if "metrics" in data or data["status"] == "ok":
        problem = _metrics_problem(data.get("metrics"))
        if problem:
            return problem if "metrics" in data else "an ok record without a 'metrics' mapping"
    if data["status"] == "ok":
        for name in ("map_i2t", "map_t2i"):
            if not _number(data["metrics"].get(name)):
                return f"metrics.{name} is missing or not a number"
    return None


def load_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None), or (None, why it is unusable); an absent file is (None, None).

    Read through `bench.readers.read_json`: only a regular file (a FIFO or device in `runs/` is
    refused, not waited on), at most `MAX_RECORD_BYTES`, nesting that would exhaust the recursion
    limit refused; then checked by `record_problem`.
    """
    from bench.errors import ConfigError
    from bench.readers import read_json

    if not os.path.lexists(path):
        return None, None
    try:
        data = read_json(Path(path), "record", MAX_RECORD_BYTES)
    except ConfigError as exc:
        message = str(exc)
        return None, message.split(": ", 1)[1] if message.startswith(f"{path}: ") else message
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
