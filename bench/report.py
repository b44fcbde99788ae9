"""Tables from result records (never re-training): mean +- std over seeds per dataset and method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.records import iter_records

COLUMNS = {"map_i2t": "I→T", "map_t2i": "T→I", "map_avg": "Avg"}
LATEX_COLUMNS = {"map_i2t": r"I$\to$T", "map_t2i": r"T$\to$I", "map_avg": "Avg"}
# Best epoch chosen on the test split, as published code does: shown beside, never instead.
OPTIMISTIC = "test_selected_map_avg"
COLUMNS_EXTRA = {OPTIMISTIC: "Avg, test-selected (optimistic)"}


def records_frame(records: list[dict[str, Any]], keys: set[str] | None = None) -> pd.DataFrame:
    """One row per finished ok run; for a repeated (sweep, dataset, method, seed) the newest record wins."""
    rows = []
    for rec in records:
        if rec.get("status") != "ok" or (keys is not None and rec["key"] not in keys):
            continue
        spec, metrics = rec["spec"], rec.get("metrics", {})
        row = {"sweep": spec["sweep"], "dataset": spec["dataset_label"], "method": spec["method_label"],
               "seed": spec["seed"], "key": rec["key"], "finished": rec.get("finished", ""),
               "position": rec.get("position", 0)}
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if rec.get("test_selected"):
            row["test_selected_map_avg"] = rec["test_selected"]["map_avg"]
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["sweep", "dataset", "method", "seed", "key", "finished", *COLUMNS])
    df = pd.DataFrame(rows).sort_values("finished", kind="stable")
    df = df.drop_duplicates(["sweep", "dataset", "method", "seed"], keep="last")
    return df.sort_values(["position", "finished"], kind="stable").reset_index(drop=True)


def summarise(df: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, sample std (ddof=1; 0 for one seed) and seed count per (sweep, dataset, method), in first-seen order."""
    metrics = metrics or list(COLUMNS)
    order = {k: i for i, k in enumerate(dict.fromkeys(zip(df["sweep"], df["dataset"], df["method"])))}
    out = []
    for (sweep, dataset, method), g in df.groupby(["sweep", "dataset", "method"], sort=False):
        row: dict[str, Any] = {"sweep": sweep, "dataset": dataset, "method": method, "seeds": len(g)}
        for m in metrics:
            vals = g[m].to_numpy(dtype=float) if m in g else np.array([np.nan])
            vals = vals[~np.isnan(vals)] if not np.isnan(vals).all() else vals
            row[f"{m}_mean"] = float(np.mean(vals))
            row[f"{m}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        row["_order"] = order[(sweep, dataset, method)]
        out.append(row)
    table = pd.DataFrame(out)
    return table.sort_values("_order").drop(columns="_order").reset_index(drop=True) if out else table


def _cells(table: pd.DataFrame, metrics: list[str], fmt: str, digits: int) -> list[list[str]]:
    rows = []
    best = {m: table.groupby(["sweep", "dataset"])[f"{m}_mean"].transform("max") for m in metrics}
    for i, r in table.iterrows():
        cells = [r["dataset"], r["method"]]
        for m in metrics:
            mean, std = r[f"{m}_mean"], r[f"{m}_std"]
            if np.isnan(mean):
                cells.append("–")
                continue
            if fmt == "latex":
                text = f"{mean:.{digits}f} \\pm {std:.{digits}f}"
                cell = f"$\\mathbf{{{mean:.{digits}f}}} \\pm {std:.{digits}f}$" if mean == best[m][i] else f"${text}$"
            else:
                text = f"{mean:.{digits}f} ± {std:.{digits}f}"
                cell = f"**{text}**" if mean == best[m][i] and fmt == "markdown" else text
            cells.append(cell)
        cells.append(str(r["seeds"]))
        rows.append(cells)
    return rows


def render(table: pd.DataFrame, fmt: str = "markdown", metrics: list[str] | None = None, digits: int = 4) -> str:
    """The summary table as markdown, latex, csv or html; one table per sweep; best mean in bold."""
    metrics = metrics or list(COLUMNS)
    if fmt == "csv":
        return table.to_csv(index=False)
    parts = []
    for sweep, t in table.groupby("sweep", sort=False):
        t = t.reset_index(drop=True)
        rows = _cells(t, metrics, fmt, digits)
        if fmt == "markdown":
            head = ["dataset", "method", *(f"mAP {COLUMNS.get(m) or COLUMNS_EXTRA.get(m, m)}" for m in metrics),
                    "seeds"]
            lines = [f"### {sweep}", "", "| " + " | ".join(head) + " |",
                     "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
            lines += ["| " + " | ".join(c) + " |" for c in rows]
            parts.append("\n".join(lines))
        elif fmt == "latex":
            head = ["Dataset", "Method", *(LATEX_COLUMNS.get(m) or COLUMNS_EXTRA.get(m, m) for m in metrics),
                    "Seeds"]
            esc = lambda s: str(s).replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")  # noqa: E731
            lines = [f"% sweep: {sweep}; mAP@all, mean $\\pm$ sample std over seeds", r"\begin{tabular}{ll"
                     + "c" * len(metrics) + "r}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
            lines += [" & ".join([esc(c[0]), esc(c[1]), *c[2:]]) + r" \\" for c in rows]
            lines += [r"\bottomrule", r"\end{tabular}"]
            parts.append("\n".join(lines))
        elif fmt == "html":
            parts.append(f"<h3>{sweep}</h3>\n" + t.to_html(index=False, float_format=lambda x: f"{x:.{digits}f}"))
        else:
            raise BenchError(f"unknown report format '{fmt}'; use markdown, latex, csv or html")
    return "\n\n".join(parts) + "\n"


def report(results: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
           fmt: str = "markdown", digits: int = 4) -> str:
    """Render the table for the given sweeps (all under `results` when None)."""
    records = iter_records(results, sweeps)
    df = records_frame(records, keys)
    if df.empty:
        where = ", ".join(sweeps) if sweeps else str(results)
        raise BenchError(f"no finished runs found for {where}; run `bench run SWEEP.yaml` first")
    metrics = list(COLUMNS)
    if OPTIMISTIC in df and df[OPTIMISTIC].notna().any():
        metrics.append(OPTIMISTIC)
    return render(summarise(df, metrics), fmt, metrics=metrics, digits=digits)
