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


def mean_pr_curves(records: list[dict[str, Any]], keys: set[str] | None = None
                   ) -> dict[tuple[str, str], dict[str, dict[str, tuple[np.ndarray, np.ndarray, int]]]]:
    """{(sweep, dataset): {method: {"pr_i2t"/"pr_t2i": (recall, precision, seeds)}}}: elementwise means
    over seeds of the ok records (newest per seed), in sweep order; curves on another cutoff grid
    than the method's first are left out of its mean."""
    newest: dict[tuple, dict[str, Any]] = {}
    for rec in records:
        if rec.get("status") != "ok" or (keys is not None and rec["key"] not in keys):
            continue
        s = rec["spec"]
        ident = (s["sweep"], s["dataset_label"], s["method_label"], s["seed"])
        if ident not in newest or rec.get("finished", "") >= newest[ident].get("finished", ""):
            newest[ident] = rec
    gathered: dict[tuple[str, str], dict[str, dict[str, list]]] = {}
    for (sweep, dataset, method, _seed), rec in sorted(newest.items(), key=lambda kv: kv[1].get("position", 0)):
        for direction in ("pr_i2t", "pr_t2i"):
            pr = rec.get("metrics", {}).get(direction)
            if pr and "precision" in pr:
                gathered.setdefault((sweep, dataset), {}).setdefault(method, {}).setdefault(direction, []).append(pr)
    out: dict = {}
    for group, methods in gathered.items():
        for method, per_dir in methods.items():
            for direction, runs in per_dir.items():
                runs = [r for r in runs if len(r["recall"]) == len(runs[0]["recall"])]
                out.setdefault(group, {}).setdefault(method, {})[direction] = (
                    np.mean([r["recall"] for r in runs], axis=0), np.mean([r["precision"] for r in runs], axis=0),
                    len(runs))
    return out


def pr_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None
               ) -> list[Path]:
    """One PNG per (sweep, dataset): PR curves (I→T and T→I) of every method, averaged over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (sweep, dataset), methods in mean_pr_curves(iter_records(results, sweeps), keys).items():
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for ax, direction, title in ((axes[0], "pr_i2t", "image → text"), (axes[1], "pr_t2i", "text → image")):
            for method, per_dir in methods.items():
                if direction in per_dir:
                    recall, precision, n = per_dir[direction]
                    ax.plot(recall, precision, label=f"{method} ({n})", linewidth=1.2)
            ax.set_title(f"{dataset}: {title}")
            ax.set_xlabel("recall")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("precision")
        axes[1].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{sweep}__{dataset}")
        path = out_dir / f"pr_{safe}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


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
