"""Tables from result records (never re-training): mean +- std over seeds per dataset and method."""

from __future__ import annotations

import hashlib
import json
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


# Spec fields that do not change what a run computes (labels, bookkeeping) or that vary by design
# across the seeds of one configuration (the seed; the split seed under split_per_seed).
_NOT_CONFIG = {"sweep", "dataset_label", "method_label", "seed", "optional"}


def config_identity(spec: dict[str, Any]) -> dict[str, Any]:
    """The resolved configuration of a run, flattened, without its seed (and split seed): records
    of one configuration differ only in their seeds."""
    ident = {k: v for k, v in spec.items() if k not in _NOT_CONFIG}
    if isinstance(ident.get("split"), dict):
        ident["split"] = {k: v for k, v in ident["split"].items() if k != "seed"}
    return _flat(ident)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True, default=str)
    return out


def _config_id(ident: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]


def records_frame(records: list[dict[str, Any]], keys: set[str] | None = None) -> pd.DataFrame:
    """One row per finished ok run, with its configuration id (`config`).

    For a repeated (sweep, dataset, method, configuration, seed) the newest record wins. Records
    of one (dataset, method label) whose resolved configurations differ (an edited `epochs`, a
    changed method source, ...) are never merged: they keep distinct `config` ids, and the
    method label gets a suffix naming what differs (`pgnn_con [epochs=41]`); `config_notes`
    describes each such split.
    """
    rows, idents = [], {}
    for rec in records:
        if rec.get("status") != "ok" or (keys is not None and rec["key"] not in keys):
            continue
        spec, metrics = rec["spec"], rec.get("metrics", {})
        ident = config_identity(spec)
        cid = _config_id(ident)
        idents[cid] = ident
        split_seed = spec.get("split", {}).get("seed") if isinstance(spec.get("split"), dict) else None
        row = {"sweep": spec["sweep"], "dataset": spec["dataset_label"], "method": spec["method_label"],
               "seed": spec["seed"], "key": rec["key"], "finished": rec.get("finished", ""),
               "position": rec.get("position", 0), "config": cid, "split_seed": split_seed}
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if rec.get("test_selected"):
            row["test_selected_map_avg"] = rec["test_selected"]["map_avg"]
        rows.append(row)
    if not rows:
        df = pd.DataFrame(columns=["sweep", "dataset", "method", "seed", "key", "finished", "config", *COLUMNS])
        df.attrs["config_notes"] = []
        return df
    df = pd.DataFrame(rows).sort_values("finished", kind="stable")
    df = df.drop_duplicates(["sweep", "dataset", "method", "config", "seed"], keep="last")
    df = _split_mixed_split_seeds(df)
    df, notes = _label_configs(df, idents)
    df = df.sort_values(["position", "finished"], kind="stable").reset_index(drop=True)
    df.attrs["config_notes"] = notes
    return df


def _split_mixed_split_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """The split seed is one value for every seed of a configuration, or each run's own seed
    (split_per_seed); anything else mixes two split protocols, which become two configurations."""
    df = df.copy()
    for _, g in df.groupby(["sweep", "dataset", "method", "config"], sort=False):
        seeds = g["split_seed"]
        if seeds.nunique(dropna=False) <= 1 or (seeds == g["seed"]).all():
            continue
        per_seed = seeds == g["seed"]
        df.loc[g.index, "config"] = [f"{c}-split{'=seed' if p else s}"
                                     for c, p, s in zip(g["config"], per_seed, seeds)]
    return df


def _label_configs(df: pd.DataFrame, idents: dict[str, dict[str, Any]]) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Suffix the method label of each configuration when a label holds several; one note per label."""
    df = df.copy()
    notes = []
    for (sweep, dataset, method), g in df.groupby(["sweep", "dataset", "method"], sort=False):
        configs = list(dict.fromkeys(g.sort_values("finished")["config"]))
        if len(configs) < 2:
            continue
        flats = [dict(idents.get(c.split("-split")[0], {})) for c in configs]
        for c, flat in zip(configs, flats):
            if "-split" in c:
                flat["split.seed"] = c.split("-split")[1]
        keys = sorted({k for f in flats for k in f if len({f.get(k) for f in flats}) > 1})
        for c, flat in zip(configs, flats):
            what = ", ".join(f"{_short(k)}={_unquote(flat.get(k, '–'))}" for k in keys) or c
            df.loc[g.index[g["config"] == c], "method"] = f"{method} [{what}]"
        notes.append((sweep, f"{method} on {dataset} has records of {len(configs)} configurations "
                     f"(differing in {', '.join(_short(k) for k in keys)}); they are shown as separate rows, "
                     "never averaged; pass the sweep file to report only its current definition"))
    return df, notes


def _short(key: str) -> str:
    """'params.epochs' -> 'epochs'; 'code_version' -> 'code' (the method's source changed)."""
    if key == "code_version":
        return "code"
    return key.removeprefix("params.")


def _unquote(value: str) -> str:
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def summarise(df: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, sample std (ddof=1), seed count and whether every seed gave the same value, per
    (sweep, dataset, method), in first-seen order. The std of one seed is undefined (NaN)."""
    metrics = metrics or list(COLUMNS)
    order = {k: i for i, k in enumerate(dict.fromkeys(zip(df["sweep"], df["dataset"], df["method"])))}
    out = []
    for (sweep, dataset, method), g in df.groupby(["sweep", "dataset", "method"], sort=False):
        row: dict[str, Any] = {"sweep": sweep, "dataset": dataset, "method": method, "seeds": len(g)}
        for m in metrics:
            vals = g[m].to_numpy(dtype=float) if m in g else np.array([np.nan])
            vals = vals[~np.isnan(vals)]
            row[f"{m}_mean"] = float(np.mean(vals)) if len(vals) else np.nan
            row[f"{m}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else np.nan
            row[f"{m}_n"] = len(vals)
            row[f"{m}_same"] = bool(len(vals) > 1 and np.ptp(vals) == 0)
        row["_order"] = order[(sweep, dataset, method)]
        out.append(row)
    table = pd.DataFrame(out)
    if out:
        table = table.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    table.attrs["config_notes"] = list(df.attrs.get("config_notes", []))
    return table


def spread(mean: float, std: float, n: int, same: bool, digits: int, pm: str = " ± ") -> tuple[str, str]:
    """(mean text, spread text): '± std', or 'n=1' (std undefined), or 'deterministic' (every
    seed gave exactly the same value) instead of a fake ± 0."""
    m = f"{mean:.{digits}f}"
    if n <= 1:
        return m, "n=1"
    if same:
        return m, "deterministic"
    return m, f"{pm.strip()} {std:.{digits}f}"


def _cells(table: pd.DataFrame, metrics: list[str], fmt: str, digits: int) -> list[list[str]]:
    rows = []
    best = {m: table.groupby(["sweep", "dataset"])[f"{m}_mean"].transform("max") for m in metrics}
    for i, r in table.iterrows():
        cells = [r["dataset"], r["method"]]
        for m in metrics:
            mean = r[f"{m}_mean"]
            if np.isnan(mean):
                cells.append("–")
                continue
            text, sp = spread(mean, r[f"{m}_std"], r[f"{m}_n"], r[f"{m}_same"], digits)
            is_best = mean == best[m][i]
            if fmt == "latex":
                core = f"\\mathbf{{{text}}}" if is_best else text
                sp = f" \\pm {sp[2:]}" if sp.startswith("±") else f"\\ \\text{{({sp})}}"
                cell = f"${core}{sp}$"
            else:
                cell = f"{text} ± {sp[2:]}" if sp.startswith("±") else f"{text} ({sp})"
                cell = f"**{cell}**" if is_best and fmt == "markdown" else cell
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
        notes = [n for sw, n in table.attrs.get("config_notes", []) if sw == sweep]
        if notes:
            mark = "% " if fmt == "latex" else ""
            parts[-1] += "\n\n" + "\n".join(f"{mark}Note: {n}." for n in notes)
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
