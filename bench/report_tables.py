"""The main and cost tables of a sweep, from the summary (`bench.report_frame.summarise`).

- `paper_table`: rows = configurations (methods, variants, `[key=value]` rows) in sweep order with
  each variant under its family, columns = datasets x (I→T, T→I, Avg);
- `long_table`: one row per (dataset, method), with the seed count and extra columns;
- `cost_table`: training time, parameters and peak memory, with a caption saying which memory
  figure each row holds (a per-run one when records have it, else the process's running peak).

Rows are grouped into blocks (a rule between blocks): each family with several rows (a model
and its variants) is a block, and consecutive one-row families (the baselines) share one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.report_cells import Cell, Table, rank
from bench.report_frame import DIR_TITLES, DIRECTIONS, Metric
from bench.report_names import Names

MEMORY_CAPTIONS = {
    "gpu": "GPU: the run's own peak of allocated memory (reset before each run)",
    "run": "the run's own increase of resident memory over the process's level before it",
    "process": "the process's peak resident memory so far: it only rises through a serial sweep, so a run "
               "inherits the peaks of the runs before it (not a per-run figure)",
}


def method_order(t: pd.DataFrame) -> list[str]:
    """Row labels in first-seen order, each family's rows together (variants under their model)."""
    methods = list(dict.fromkeys(t["method"]))
    family = {m: t[t["method"] == m]["family"].iloc[0] for m in methods}
    first = {f: i for i, f in reversed(list(enumerate(family[m] for m in methods)))}
    return sorted(methods, key=lambda m: (first[family[m]], methods.index(m)))


def blocks(families: list[str]) -> list[int]:
    """Row indices that start a block: a family with several rows is one block; consecutive
    one-row families share one (no rule between every baseline)."""
    sizes = {f: families.count(f) for f in families}
    keys = [f if sizes[f] > 1 else "\x00single" for f in families]
    return [i for i in range(1, len(keys)) if keys[i] != keys[i - 1]]


def stat_cell(row: Any, key: str) -> Cell:
    """The mean ± std cell of one summary row (an empty cell when there is no row)."""
    if row is None:
        return Cell(np.nan)
    return Cell(row[f"{key}_mean"], row[f"{key}_std"], row[f"{key}_n"], bool(row[f"{key}_same"]))


def legend_keys(rows: list[tuple[str, list[Cell]]], std: bool = True) -> list[str]:
    """Which legend lines a table needs: the spread, one seed, deterministic, ranks."""
    cells = [c for _, cs in rows for c in cs if c.kind == "stat" and not np.isnan(c.mean)]
    keys = ["spread"] if std and cells else []
    keys += ["ranks"] if any(c.rank for _, cs in rows for c in cs) else []
    keys += ["n1"] if std and any(c.n <= 1 for c in cells) else []
    keys += ["deterministic"] if std and any(c.same and c.n > 1 for c in cells) else []
    return keys


def paper_table(summary: pd.DataFrame, metric: Metric, sweep: str, names: Names | None = None) -> Table:
    """Rows = configurations in sweep order, columns = datasets x (I→T, T→I, Avg)."""
    names = names or Names()
    t = summary[summary["sweep"] == sweep]
    datasets = list(dict.fromkeys(t["dataset"]))
    methods = method_order(t)
    columns = [(ds, d) for ds in datasets for d in DIRECTIONS]
    lookup = {(r["dataset"], r["method"]): r for _, r in t.iterrows()}
    rows = [(names.method(m), [stat_cell(lookup.get((ds, m)), metric.keys[d]) for ds, d in columns])
            for m in methods]
    for j in range(len(columns)):
        rank([cells[j] for _, cells in rows])
    families = [t[t["method"] == m]["family"].iloc[0] for m in methods]
    table = Table(sweep, [(names.dataset(ds), DIR_TITLES[d]) for ds, d in columns], rows, blocks(families))
    table.legend = legend_keys(rows)
    return table


def long_table(summary: pd.DataFrame, metric: Metric, sweep: str, extra: list[str] | None = None,
               names: Names | None = None) -> Table:
    """One row per (dataset, method): I→T, T→I, Avg (and extra columns) and the seed count."""
    names = names or Names()
    t = summary[summary["sweep"] == sweep]
    keys = [metric.keys[d] for d in DIRECTIONS] + list(extra or [])
    heads = [DIR_TITLES[d] for d in DIRECTIONS] + ["Avg, test-selected (optimistic)" for _ in extra or []]
    order = method_order(t)
    rows, groups = [], []
    for ds in dict.fromkeys(t["dataset"]):
        part = t[t["dataset"] == ds]
        part = part.iloc[sorted(range(len(part)), key=lambda i: order.index(part["method"].iloc[i]))]
        if rows:
            groups.append(len(rows))
        first = len(rows)
        for _, r in part.iterrows():
            cells = [stat_cell(r, k) for k in keys] + [Cell(0, kind="plain", text=str(r["seeds"]))]
            rows.append((f"{names.dataset(ds)}\x1f{names.method(r['method'])}", cells))
        for j in range(len(keys)):
            rank([cells[j] for _, cells in rows[first:]])
    table = Table(sweep, [("", f"{metric.title} {n}") for n in heads] + [("", "seeds")], rows, groups,
                  stub="dataset\x1fmethod")
    table.legend = legend_keys(rows)
    return table


def cost_table(summary: pd.DataFrame, sweep: str, names: Names | None = None) -> Table:
    """Training time (s), parameter count and peak memory (MiB), mean over seeds, per dataset and method."""
    names = names or Names()
    t = summary[summary["sweep"] == sweep].reset_index(drop=True)
    kinds = list(dict.fromkeys(k for k in t.get("cost_peak_kind", pd.Series(dtype=str)) if k))
    rows = []
    for _, r in t.iterrows():
        params, peak = r.get("cost_params_mean", np.nan), r["cost_peak_mb_mean"]
        cells = [Cell(r["cost_fit_s_mean"], r["cost_fit_s_std"], r["cost_fit_s_n"], bool(r["cost_fit_s_same"]),
                      digits=2),
                 Cell(0, kind="plain", text="–" if np.isnan(params) else f"{int(params):,}"),
                 Cell(0, kind="plain", text="–" if np.isnan(peak) else f"{peak:.0f}")]
        if len(kinds) > 1:
            cells.append(Cell(0, kind="plain", text=r.get("cost_peak_kind") or "–"))
        rows.append((f"{names.dataset(r['dataset'])}\x1f{names.method(r['method'])}", cells))
    datasets = [label.split("\x1f")[0] for label, _ in rows]
    groups = [i for i in range(1, len(rows)) if datasets[i] != datasets[i - 1]]
    peak_head = {"gpu": "GPU peak MiB", "run": "run peak MiB", "process": "process peak MiB"}.get(
        kinds[0] if len(kinds) == 1 else "", "peak MiB")
    columns = [("", "train s"), ("", "parameters"), ("", peak_head)] + ([("", "memory")] if len(kinds) > 1 else [])
    memory = "; ".join(f"{k}: {MEMORY_CAPTIONS[k]}" if len(kinds) > 1 else MEMORY_CAPTIONS[k] for k in kinds)
    caption = ("Cost: fit time in seconds (mean ± std over seeds), trainable parameters, peak memory in MiB "
               f"(mean over seeds; {memory or 'not recorded'})")
    return Table(f"{sweep}: cost", columns, rows, groups, stub="dataset\x1fmethod", caption=caption,
                 notes=[caption + "."])
