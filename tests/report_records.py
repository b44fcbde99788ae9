"""Hand-made result records for the report tests: only the fields a report reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bench.records import record_path


def rec(method: str, seed: int, avg: float, *, dataset: str = "synthetic", sweep: str = "s",
        i2t: float | None = None, params: dict[str, Any] | None = None, split: dict[str, Any] | None = None,
        dataset_params: dict[str, Any] | None = None, position: int = 0, metrics: dict[str, Any] | None = None,
        fingerprint: str = "fp-synthetic", status: str = "ok", **top: Any) -> dict[str, Any]:
    """A record of `method` (a `family/variant` label makes a variant) with Avg mAP `avg`."""
    i2t = avg + 0.01 if i2t is None else i2t
    spec = {"sweep": sweep, "dataset": dataset.split("-")[0], "dataset_label": dataset,
            "dataset_params": dataset_params or {"n": 100}, "method_label": method, "method": method.split(" ")[0],
            "family": method.split("/")[0].split(" ")[0], "seed": seed, "params": params or {"D": 8},
            "split": split or {"val": 0.1, "test": 0.2, "seed": 0}, "missing": None, "missing_policy": "drop"}
    key = hashlib.sha256(json.dumps([spec, status], sort_keys=True).encode()).hexdigest()[:16]
    values = {"map_i2t": i2t, "map_t2i": 2 * avg - i2t, "map_avg": avg, **(metrics or {})}
    return {"key": key, "status": status, "finished": top.pop("finished", "2026-01-01T00:00:00"),
            "spec": spec, "metrics": values if status == "ok" else {}, "position": position,
            "data": {"fingerprint": fingerprint}, "reason": "ValueError: planted" if status == "failed" else None,
            **top}


def write(results: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Store a record where `bench report` reads it; returns it."""
    path = record_path(results, record["spec"]["sweep"], record["key"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record
