"""`bench report A B --merge`: one table for several sweeps, only where their data and protocol agree.

Two sweeps may share a table when every dataset label they have in common was run on the same
data (the dataset's fingerprint, name and parameters), the same split (fractions, retrieval set
and split seeds: one fixed split, or one per seed) and the same missing-modality protocol. The
check reads the records, so it judges what ran, not what the files say now; the first field that
differs is named in a one-line refusal.
"""

from __future__ import annotations

import json
from typing import Any

from bench.errors import BenchError


def _split_mode(runs: list[dict[str, Any]]) -> str:
    pairs = {(r["spec"]["seed"], (r["spec"].get("split") or {}).get("seed")) for r in runs}
    if len({s for s, _ in pairs}) > 1 and all(s == split for s, split in pairs):
        return "a split per seed"
    return "split seed " + ", ".join(sorted({json.dumps(split) for _, split in pairs}))


def protocol(runs: list[dict[str, Any]]) -> dict[str, str]:
    """What the runs of one (sweep, dataset label) share, field by field, as text."""
    def values(get: Any) -> str:
        return ", ".join(sorted({json.dumps(get(r), sort_keys=True, default=str) for r in runs}))

    return {
        "data fingerprint": values(lambda r: (r.get("data") or {}).get("fingerprint")),
        "dataset": values(lambda r: r["spec"].get("dataset")),
        "dataset parameters": values(lambda r: r["spec"].get("dataset_params")),
        "split": values(lambda r: {k: v for k, v in (r["spec"].get("split") or {}).items() if k != "seed"}),
        "split seeds": _split_mode(runs),
        "missing-modality protocol": values(lambda r: [r["spec"].get("missing"), r["spec"].get("missing_policy")]),
    }


def check_mergeable(records: list[dict[str, Any]], sweeps: list[str], keys: set[str] | None = None) -> None:
    """Raise a one-line BenchError unless the sweeps share a dataset and agree on each shared one."""
    if len(sweeps) < 2:
        raise BenchError("--merge combines two or more sweeps into one table; name them "
                         "(e.g. bench report baselines ablation --merge)")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in sweeps}
    for rec in records:
        sweep = rec["spec"]["sweep"]
        if rec.get("status") == "ok" and sweep in runs and (keys is None or rec["key"] in keys):
            runs[sweep].setdefault(rec["spec"]["dataset_label"], []).append(rec)
    labels = [ds for s in sweeps for ds in runs[s]]
    shared = [ds for ds in dict.fromkeys(labels) if labels.count(ds) > 1]
    if not shared:
        raise BenchError(f"--merge: sweeps {', '.join(sweeps)} share no dataset, so there is nothing to put side by "
                         "side; report them without --merge")
    for ds in shared:
        having = [s for s in sweeps if ds in runs[s]]
        first = protocol(runs[having[0]][ds])
        for other in having[1:]:
            theirs = protocol(runs[other][ds])
            for field, value in first.items():
                if theirs[field] != value:
                    raise BenchError(f"--merge: sweeps {having[0]} and {other} differ on dataset {ds} ({field}: "
                                     f"{value} vs {theirs[field]}); a merged table needs the same data and "
                                     "protocol, so report them without --merge")
