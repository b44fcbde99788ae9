"""The lowest floor of the report: result records -> one row per run (the table frame).

`records_frame` turns records into a pandas frame: the newest record per run, records of
different resolved configurations kept apart and labelled (`bench.report_configs`);
`summarise` reduces it to mean and sample std per (sweep, dataset, method); `parse_metric` names
the measure a table shows. Every other report module (tables, ablation, figures, csv, html)
reads this frame; nothing here imports them.

Columns of the frame: `sweep` (the merged name under `--merge`), `origin` (the sweep a record
belongs to), `dataset` and `method` (the labels rows and columns show: the sweep's labels, with
`[key=value]` where configurations differ), `dataset_base` / `method_base` (the sweep's labels),
`method_name`, `family`, `seed`, `key`, `finished`, `position`, `config` / `mconfig` / `dconfig`
(ids of the whole, method-side and data-side configuration), `split_seed`, `fingerprint`,
`best_epoch`, `last_epoch`, every scalar metric, `cost_*` columns and `undefined`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.report_configs import Reference, config_id, config_identity, label_configurations, split_sides

DIRECTIONS = ("i2t", "t2i", "avg")
DIR_TITLES = {"i2t": "I→T", "t2i": "T→I", "avg": "Avg"}
COLUMNS = {"map_i2t": "I→T", "map_t2i": "T→I", "map_avg": "Avg"}
# Best epoch chosen on the test split, as published code does: shown beside, never instead.
OPTIMISTIC = "test_selected_map_avg"
# Peak memory fields of a record, best first: (field under "memory", kind). The GPU peak is reset
# before each run and a `peak_delta_mb` is the run's own increase over the process's level before
# it; `peak_rss_mb` is the process's running peak, which only rises through a serial sweep.
MEMORY_FIELDS = (("cuda_peak_mb", "gpu"), ("peak_delta_mb", "run"), ("peak_rss_mb", "process"))
# Runs of a merged report keep their sweep's order: positions of the n-th sweep start here.
_SWEEP_STRIDE = 10**9


@dataclass(frozen=True)
class Metric:
    """A reported measure: its name as typed (`map`, `map@100`, `p@100`), column keys per direction."""

    name: str
    title: str
    keys: dict[str, str]


_METRIC_RE = re.compile(r"^(map|p)(?:@(\d+))?$")


def parse_metric(name: str) -> Metric:
    """'map' -> mAP@all, 'map@K' -> mAP@K, 'p@K' -> precision@K (keys as the records store them)."""
    found = _METRIC_RE.match(name.strip().lower())
    if (not found or (found.group(1) == "p" and found.group(2) is None)
            or (found.group(2) is not None and int(found.group(2)) < 1)):
        raise BenchError(f"unknown metric '{name}'; use map, map@K or p@K (K a positive integer, e.g. p@100)")
    kind, k = found.group(1), found.group(2)
    if kind == "map" and k is None:
        return Metric("map", "mAP", {d: f"map_{d}" for d in DIRECTIONS})
    if kind == "map":
        return Metric(f"map@{k}", f"mAP@{k}", {d: f"map_{d}@{k}" for d in DIRECTIONS})
    return Metric(f"p@{k}", f"P@{k}", {d: f"p@{k}_{d}" for d in DIRECTIONS})


def available_metrics(df: pd.DataFrame) -> list[str]:
    """Metric names (as `--metric` takes them) that some record of the frame holds."""
    names = []
    for col in df.columns:
        found = re.match(r"^map_i2t(@\d+)?$", col) or re.match(r"^p@(\d+)_i2t$", col)
        if found:
            names.append("map" + (found.group(1) or "") if col.startswith("map") else f"p@{found.group(1)}")
    return sorted(set(names), key=lambda n: (n[0] != "m", len(n), n))


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics, plus the average of the two directions of every cutoff metric."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k, v in list(scalars.items()):
        if re.match(r"^p@(\d+)_i2t$", k) or re.match(r"^map_i2t@(\d+)$", k):
            other = k.replace("i2t", "t2i")
            if other in scalars:
                scalars[k.replace("i2t", "avg")] = (v + scalars[other]) / 2
    return scalars


def _cost(rec: dict[str, Any]) -> dict[str, Any]:
    memory = rec.get("memory") or {}
    field, kind = next(((f, k) for f, k in MEMORY_FIELDS if isinstance(memory.get(f), (int, float))), ("", ""))
    return {"cost_fit_s": (rec.get("timings") or {}).get("fit_s", np.nan),
            "cost_params": (rec.get("cost") or {}).get("parameters", np.nan),
            "cost_peak_mb": memory[field] if field else np.nan, "cost_peak_kind": kind}


def _epochs(rec: dict[str, Any]) -> dict[str, Any]:
    """The selected (best validation) epoch and the last trained epoch of an iterative run."""
    steps = [row["step"] for row in rec.get("history") or [] if isinstance(row, dict)
             and isinstance(row.get("step"), (int, float))]
    best = rec.get("best_epoch")
    return {"best_epoch": best if isinstance(best, (int, float)) and len(steps) > 1 else np.nan,
            "last_epoch": max(steps) if len(steps) > 1 else np.nan}


def _row(rec: dict[str, Any], idents: dict[str, dict[str, dict[str, str]]]) -> dict[str, Any]:
    spec = rec["spec"]
    ident = config_identity(spec)
    mside, dside = split_sides(ident)
    mid, did = config_id(mside), config_id(dside)
    idents["m"][mid], idents["d"][did] = mside, dside
    split = spec.get("split") if isinstance(spec.get("split"), dict) else {}
    label = spec["method_label"]
    row = {"sweep": spec["sweep"], "origin": spec["sweep"], "dataset": spec["dataset_label"],
           "method": label, "method_name": spec.get("method", label),
           "family": spec.get("family", label.split("/")[0]), "seed": spec["seed"], "key": rec["key"],
           "finished": rec.get("finished", ""), "position": rec.get("position", 0),
           "config": f"{mid}-{did}", "mconfig": mid, "dconfig": did, "split_seed": split.get("seed"),
           "fingerprint": (rec.get("data") or {}).get("fingerprint"),
           "threads": (rec.get("environment") or {}).get("torch_threads")}
    row.update(_scalars(rec.get("metrics", {})))
    if rec.get("test_selected"):
        row[OPTIMISTIC] = rec["test_selected"]["map_avg"]
    row.update(_cost(rec))
    row.update(_epochs(rec))
    row.update({f"diag_{k}": v for k, v in (rec.get("diagnostics") or {}).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)})
    row["undefined"] = json.dumps(rec.get("metrics", {}).get("undefined", {}))
    row["nan_metrics"] = " ".join(k for k, v in rec.get("metrics", {}).items() if isinstance(v, float) and v != v)
    return row


def records_frame(records: list[dict[str, Any]], keys: set[str] | None = None, *,
                  reference: Reference | None = None, merge: list[str] | None = None) -> pd.DataFrame:
    """One row per finished ok run (of `keys` when given).

    For a repeated (sweep, dataset, method, configuration, seed) the newest record wins. Records
    of different resolved configurations are never merged: `bench.report_configs` labels the rows
    and columns with what differs, relative to the sweep file's current definition when a
    `reference` is given; `attrs["config_notes"]` holds one note per (sweep, label) concerned.
    `merge` (sweep names) puts the runs of those sweeps into one sweep named `a+b`, in their order.
    """
    rows: list[dict[str, Any]] = []
    idents: dict[str, dict[str, dict[str, str]]] = {"m": {}, "d": {}}
    for rec in records:
        if rec.get("status") == "ok" and (keys is None or rec["key"] in keys):
            rows.append(_row(rec, idents))
    if not rows:
        df = pd.DataFrame(columns=["sweep", "origin", "dataset", "method", "method_name", "family", "seed",
                                   "key", "finished", "config", *COLUMNS])
        df.attrs.update(config_notes=[], identities=idents)
        return df
    df = pd.DataFrame(rows)
    if reference is not None and reference.order:
        df = _file_order(df, reference)
    if merge:
        order = {name: i for i, name in enumerate(merge)}
        df["position"] = df["position"] + df["origin"].map(order).fillna(len(order)) * _SWEEP_STRIDE
        df["sweep"] = df["origin"].where(~df["origin"].isin(order), "+".join(merge))
    # a run in two merged sweeps (the same configuration and seed) keeps the earlier sweep's place
    df["position"] = df.groupby(["sweep", "dataset", "method", "config", "seed"])["position"].transform("min")
    df = df.sort_values("finished", kind="stable")
    df = df.drop_duplicates(["sweep", "dataset", "method", "config", "seed"], keep="last")
    df = _split_mixed_split_seeds(df, idents)
    df, notes = label_configurations(df, idents, reference)
    df = df.sort_values(["position", "finished"], kind="stable").reset_index(drop=True)
    df.attrs.update(config_notes=notes, identities=idents)
    return df


def _file_order(df: pd.DataFrame, reference: Reference) -> pd.DataFrame:
    """Runs of a sweep given as a file take the file's order (positions recorded by an invocation
    with -s / -d count only the runs it selected); other runs follow, in their recorded order."""
    where = [reference.order.get((r.origin, r.dataset, r.method)) for r in df.itertuples()]
    df = df.copy()
    df["position"] = [p if p is not None else _SWEEP_STRIDE // 2 + old for p, old in zip(where, df["position"])]
    return df


def _split_mixed_split_seeds(df: pd.DataFrame, idents: dict[str, dict[str, dict[str, str]]]) -> pd.DataFrame:
    """The split seed is one value for every seed of a configuration, or each run's own seed
    (split_per_seed); anything else mixes two split protocols, which become two data configurations."""
    df = df.copy()
    for _, g in df.groupby(["sweep", "dataset", "method", "config"], sort=False):
        seeds = g["split_seed"]
        if seeds.nunique(dropna=False) <= 1 or (seeds == g["seed"]).all():
            continue
        for i, per_seed, value in zip(g.index, seeds == g["seed"], seeds):
            tag = "per seed" if per_seed else str(value)
            did = f"{df.at[i, 'dconfig']}-split{tag}"
            idents["d"][did] = {**idents["d"][df.at[i, "dconfig"]], "split.seed": tag}
            df.at[i, "dconfig"] = did
            df.at[i, "config"] = f"{df.at[i, 'mconfig']}-{did}"
    return df


def summarise(df: pd.DataFrame, metrics: list[str] | None = None,
              by: tuple[str, ...] = ("sweep", "dataset", "method")) -> pd.DataFrame:
    """Mean, sample std (ddof=1), value count and whether every seed gave the same value, per
    (sweep, dataset, method), in first-seen order. The std of one seed is undefined (NaN); the std
    of identical values is exactly 0 (not the 1e-16 rounding noise of the mean)."""
    metrics = metrics or list(COLUMNS)
    by = list(by)
    extra = [c for c in ("family", "method_name", "method_base", "dataset_base", "origin", "cost_peak_kind")
             if c in df.columns and c not in by]
    out = []
    for ident, g in df.groupby(by, sort=False):
        row: dict[str, Any] = dict(zip(by, ident))
        row.update({c: g[c].iloc[0] for c in extra})
        row["seeds"] = len(g)
        for m in metrics:
            vals = g[m].to_numpy(dtype=float) if m in g else np.array([np.nan])
            vals = vals[~np.isnan(vals)]
            same = bool(len(vals) > 1 and np.ptp(vals) == 0)
            row[f"{m}_mean"] = float(vals[0]) if same else float(np.mean(vals)) if len(vals) else np.nan
            row[f"{m}_std"] = 0.0 if same else float(np.std(vals, ddof=1)) if len(vals) > 1 else np.nan
            row[f"{m}_n"] = len(vals)
            row[f"{m}_same"] = same
        out.append(row)
    table = pd.DataFrame(out).reset_index(drop=True)
    table.attrs["config_notes"] = list(df.attrs.get("config_notes", []))
    return table
