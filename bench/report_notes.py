"""The lines under a sweep's tables: failed runs, runs and seeds without a record, and runs whose
selected epoch is their last (not converged as far as the validation split can tell)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.report_names import Names


def _failed(records: list[dict[str, Any]], sweep: str) -> list[str]:
    ok_keys = {r["key"] for r in records if r.get("status") == "ok"}
    newest: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec["spec"]["sweep"] != sweep or rec.get("status") != "failed" or rec["key"] in ok_keys:
            continue
        if rec.get("finished", "") >= newest.get(rec["key"], {}).get("finished", ""):
            newest[rec["key"]] = rec
    return [f"failed: {s['dataset_label']} | {s['method_label']} | seed {s['seed']}: {(r.get('reason') or '').strip()}"
            for r in newest.values() for s in [r["spec"]]]


def _without_record(records: list[dict[str, Any]], expected: dict[str, tuple[str, str, int]]) -> list[str]:
    have = {r["key"] for r in records}
    lacking: dict[tuple[str, str], list[str]] = {}
    for key, (dataset, method, seed) in expected.items():
        if key not in have:
            lacking.setdefault((dataset, method), []).append(str(seed))
    return [f"missing (no record of the sweep file's current definition; `bench run` makes it): "
            f"{dataset} | {method} | seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"
            for (dataset, method), seeds in lacking.items()]


def missing_notes(records: list[dict[str, Any]], df: pd.DataFrame, sweep: str,
                  expected: dict[str, tuple[str, str, int]] | None = None, origins: list[str] | None = None
                  ) -> list[str]:
    """Lines naming the failed runs (no ok record of the same run key), the runs the sweep file
    defines without any record (`expected`: run key -> (dataset, method, seed) of this sweep), and
    the seeds a method lacks compared with the others on its dataset. `origins`: the sweeps whose
    records the table holds (several under --merge)."""
    lines: list[str] = []
    for origin in origins or [sweep]:
        lines += _failed(records, origin)
    if expected:
        lines += _without_record(records, expected)
    d = df[df["sweep"] == sweep]
    for ds, g in d.groupby("dataset", sort=False):
        all_seeds = set(g["seed"])
        for method, gm in g.groupby("method", sort=False):
            lacking = sorted(all_seeds - set(gm["seed"]))
            if lacking:
                lines.append(f"missing seeds: {method} on {ds} lacks seed(s) {', '.join(map(str, lacking))} that "
                             "other methods on this dataset have")
    return lines


def last_epoch_note(df: pd.DataFrame, sweep: str, names: Names | None = None) -> str | None:
    """A note naming the rows whose runs selected their last epoch (and on how many seeds), or None."""
    names = names or Names()
    d = df[(df["sweep"] == sweep)]
    if "best_epoch" not in d or d["best_epoch"].isna().all():
        return None
    trained = d[d["best_epoch"].notna() & d["last_epoch"].notna()]
    per_method: dict[str, list[str]] = {}
    for (method, ds), g in trained.groupby(["method", "dataset"], sort=False):
        last = int((g["best_epoch"] == g["last_epoch"]).sum())
        if last:
            per_method.setdefault(method, []).append(f"{names.dataset(ds)} {last} of {len(g)} seeds")
    if not per_method:
        return None
    parts = [f"{names.method(m)} ({', '.join(where)})" for m, where in per_method.items()]
    return ("Selected epoch = last epoch (the validation mAP had not stopped improving when training ended, so "
            "these runs may not have converged; more epochs may change them): " + "; ".join(parts) + ".")


def threads_note(df: pd.DataFrame, sweep: str, names: Names | None = None) -> str | None:
    """A note naming the rows whose seeds ran with different torch thread counts (floating-point
    sums then differ in order, which moves results in about the 4th decimal), or None."""
    names = names or Names()
    d = df[df["sweep"] == sweep]
    if "threads" not in d or d["threads"].isna().all():
        return None
    mixed = []
    for (method, ds), g in d.groupby(["method", "dataset"], sort=False):
        counts = sorted({int(t) for t in g["threads"].dropna()})
        if len(counts) > 1:
            mixed.append(f"{names.method(method)} on {names.dataset(ds)} ({', '.join(map(str, counts))} threads)")
    if not mixed:
        return None
    return ("Seeds run with different torch thread counts (results can differ in about the 4th decimal from "
            "the thread count alone): " + "; ".join(mixed) + ".")


def nan_notes(df: pd.DataFrame, sweep: str, metric: Any) -> list[str]:
    """Lines naming the runs whose record holds NaN for the report's metric (shown as '–', not averaged)."""
    d = df[df["sweep"] == sweep]
    if "nan_metrics" not in d:
        return []
    keys = {metric.keys[k] for k in ("i2t", "t2i")}
    hit = d[d["nan_metrics"].str.split().apply(lambda ks: bool(keys & set(ks)))]
    return [f"NaN {metric.title} in the record of {r.dataset} | {r.method} | seed {r.seed} (left out of its mean)"
            for r in hit.itertuples()]
