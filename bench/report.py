"""Tables from result records (never re-training).

`bench report` reads the JSON records of one or more sweeps and renders, per sweep:

- the main table, in the paper layout (rows = methods, columns = datasets x (I->T, T->I, Avg),
  as the field's papers print it) or the long layout (one row per dataset and method), with
  mean +- sample std over seeds, best mean per column in bold and the second underlined;
- an ablation table when variants (`family/variant`) and their full model share a dataset:
  each variant's mean difference to the full model, a paired test over seeds, Holm-corrected
  across the table (`bench.stats`);
- optionally a cost table (training time, parameters, peak memory);
- the runs that failed and the seeds that are missing, under the tables.

Rendering uses tabulate (markdown, plain) and pandas' Styler (LaTeX, HTML). Records of
different resolved configurations are never averaged together (see `records_frame`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.records import iter_records

DIRECTIONS = ("i2t", "t2i", "avg")
DIR_TITLES = {"i2t": "I→T", "t2i": "T→I", "avg": "Avg"}
DIR_LATEX = {"i2t": r"I$\to$T", "t2i": r"T$\to$I", "avg": "Avg"}
COLUMNS = {"map_i2t": "I→T", "map_t2i": "T→I", "map_avg": "Avg"}
# Best epoch chosen on the test split, as published code does: shown beside, never instead.
OPTIMISTIC = "test_selected_map_avg"
FORMATS = ("markdown", "plain", "latex", "csv", "html")
LAYOUTS = ("paper", "long")


@dataclass(frozen=True)
class Metric:
    """A reported measure: its name as typed (`map`, `map@100`, `p@100`), column keys per direction."""

    name: str
    title: str
    keys: dict[str, str]


_METRIC_RE = re.compile(r"^(map|p)(?:@(\d+))?$")


def parse_metric(name: str) -> Metric:
    """'map' -> mAP@all, 'map@K' -> mAP@K, 'p@K' -> precision@K (keys as the records store them)."""
    m = _METRIC_RE.match(name.strip().lower())
    if not m or (m.group(1) == "p" and m.group(2) is None) or (m.group(2) is not None and int(m.group(2)) < 1):
        raise BenchError(f"unknown metric '{name}'; use map, map@K or p@K (K a positive integer, e.g. p@100)")
    kind, k = m.group(1), m.group(2)
    if kind == "map" and k is None:
        return Metric("map", "mAP", {d: f"map_{d}" for d in DIRECTIONS})
    if kind == "map":
        return Metric(f"map@{k}", f"mAP@{k}", {d: f"map_{d}@{k}" for d in DIRECTIONS})
    return Metric(f"p@{k}", f"P@{k}", {d: f"p@{k}_{d}" for d in DIRECTIONS})


def available_metrics(df: pd.DataFrame) -> list[str]:
    """Metric names (as `--metric` takes them) that some record of the frame holds."""
    names = []
    for col in df.columns:
        m = re.match(r"^map_i2t(@\d+)?$", col) or re.match(r"^p@(\d+)_i2t$", col)
        if m:
            names.append("map" + (m.group(1) or "") if col.startswith("map") else f"p@{m.group(1)}")
    return sorted(set(names), key=lambda n: (n[0] != "m", len(n), n))


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
    method label gets a suffix naming what differs (`pgnn_con [epochs=41]`); the frame's
    `attrs["config_notes"]` says so for each such label. The average of the two directions is
    added for every cutoff metric (`p@K_avg`, `map_avg@K`).
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
        label = spec["method_label"]
        row = {"sweep": spec["sweep"], "dataset": spec["dataset_label"], "method": label,
               "method_name": spec.get("method", label), "family": spec.get("family", label.split("/")[0]),
               "seed": spec["seed"], "key": rec["key"], "finished": rec.get("finished", ""),
               "position": rec.get("position", 0), "config": cid, "split_seed": split_seed}
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        row.update(scalars)
        for k, v in list(scalars.items()):
            m = re.match(r"^p@(\d+)_i2t$", k) or re.match(r"^map_i2t@(\d+)$", k)
            if m:
                other = k.replace("i2t", "t2i")
                if other in scalars:
                    row[k.replace("i2t", "avg")] = (v + scalars[other]) / 2
        if rec.get("test_selected"):
            row[OPTIMISTIC] = rec["test_selected"]["map_avg"]
        timings, memory = rec.get("timings", {}), rec.get("memory", {})
        row["cost_fit_s"] = timings.get("fit_s", np.nan)
        row["cost_params"] = rec.get("cost", {}).get("parameters", np.nan)
        row["cost_peak_mb"] = memory.get("cuda_peak_mb", memory.get("peak_rss_mb", np.nan))
        row["undefined"] = json.dumps(metrics.get("undefined", {}))
        rows.append(row)
    if not rows:
        df = pd.DataFrame(columns=["sweep", "dataset", "method", "method_name", "family", "seed", "key",
                                   "finished", "config", *COLUMNS])
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


def summarise(df: pd.DataFrame, metrics: list[str] | None = None,
              by: tuple[str, ...] = ("sweep", "dataset", "method")) -> pd.DataFrame:
    """Mean, sample std (ddof=1), value count and whether every seed gave the same value, per
    (sweep, dataset, method), in first-seen order. The std of one seed is undefined (NaN)."""
    metrics = metrics or list(COLUMNS)
    by = list(by)
    extra = [c for c in ("family", "method_name") if c in df.columns and c not in by]
    out = []
    for ident, g in df.groupby(by, sort=False):
        row: dict[str, Any] = dict(zip(by, ident))
        row.update({c: g[c].iloc[0] for c in extra})
        row["seeds"] = len(g)
        for m in metrics:
            vals = g[m].to_numpy(dtype=float) if m in g else np.array([np.nan])
            vals = vals[~np.isnan(vals)]
            row[f"{m}_mean"] = float(np.mean(vals)) if len(vals) else np.nan
            row[f"{m}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else np.nan
            row[f"{m}_n"] = len(vals)
            row[f"{m}_same"] = bool(len(vals) > 1 and np.ptp(vals) == 0)
        out.append(row)
    table = pd.DataFrame(out).reset_index(drop=True)
    table.attrs["config_notes"] = list(df.attrs.get("config_notes", []))
    return table


# --- cells ---------------------------------------------------------------------------------


@dataclass
class Cell:
    """One table entry before rendering: mean, spread, rank in its column (1 best, 2 second)."""

    mean: float
    std: float = float("nan")
    n: int = 0
    same: bool = False
    rank: int = 0
    mark: str = ""  # significance marker (ablation table)
    kind: str = "stat"  # stat | delta | plain
    text: str = ""
    digits: int | None = None  # overrides the table's digits (e.g. seconds)

    def render(self, fmt: str, digits: int, std: bool = True) -> str:
        """The cell in markdown, plain, latex or html."""
        digits = self.digits if self.digits is not None else digits
        if self.kind == "plain":
            return _esc(self.text, fmt)
        if np.isnan(self.mean):
            return "–" if fmt != "latex" else "--"
        if self.kind == "delta":
            core = f"{self.mean:+.{digits}f}".replace("-", "−" if fmt != "latex" else "$-$")
        else:
            core = f"{self.mean:.{digits}f}"
        spread = ""
        if self.kind == "stat" and std:
            if self.n <= 1:
                spread = "n=1"
            elif self.same:
                spread = "deterministic"
            else:
                spread = f"± {self.std:.{digits}f}"
        if fmt == "latex":
            body = {1: f"\\textbf{{{core}}}", 2: f"\\underline{{{core}}}"}.get(self.rank, core)
            if spread.startswith("±"):
                body += f"$_{{\\pm {self.std:.{digits}f}}}$"
            elif spread == "n=1":
                body += "$^{\\dagger}$"
            elif spread:
                body += "$^{\\ddagger}$"
            if self.mark:
                body += f"$^{{{self.mark.replace('†', chr(92) + 'dagger')}}}$"
            return body
        text = core + (f" {spread}" if spread.startswith("±") else f" ({spread})" if spread else "") + self.mark
        if fmt == "markdown":
            return {1: f"**{text}**", 2: f"_{text}_"}.get(self.rank, text)
        if fmt == "html":
            return {1: f"<b>{text}</b>", 2: f"<u>{text}</u>"}.get(self.rank, text)
        return text


def _esc(text: Any, fmt: str) -> str:
    text = str(text)
    if fmt == "latex":
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                     ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"),
                     ("^", r"\textasciicircum{}"), ("→", r"$\to$"), ("±", r"$\pm$"), ("–", "--"), ("−", "$-$"),
                     ("<", "$<$"), (">", "$>$"), ("†", r"$^\dagger$")):
            text = text.replace(a, b) if a != "\\" else text.replace(a, "\x00")
        return text.replace("\x00", r"\textbackslash{}")
    if fmt == "html":
        import html

        return html.escape(text)
    return text


def _rank(cells: list[Cell], higher_better: bool = True) -> None:
    """Rank 1 for the best mean(s) of a column, 2 for the second-best distinct mean."""
    values = sorted({c.mean for c in cells if not np.isnan(c.mean)}, reverse=higher_better)
    for c in cells:
        if values and c.mean == values[0]:
            c.rank = 1
        elif len(values) > 1 and c.mean == values[1]:
            c.rank = 2


# --- tables --------------------------------------------------------------------------------


@dataclass
class Table:
    """A rendered-to-be table: header rows, body rows (label + cells), row groups, notes, caption."""

    title: str
    columns: list[tuple[str, str]]  # (group, name) per data column; group "" for a flat header
    rows: list[tuple[str, list[Cell]]]
    groups: list[int] = field(default_factory=list)  # row indices starting a new group (a \midrule)
    notes: list[str] = field(default_factory=list)
    caption: str = ""
    label: str = ""
    stub: str = "Method"
    std: bool = True


def paper_table(summary: pd.DataFrame, metric: Metric, sweep: str) -> Table:
    """Rows = methods in sweep order, columns = datasets x (I→T, T→I, Avg)."""
    t = summary[summary["sweep"] == sweep]
    datasets = list(dict.fromkeys(t["dataset"]))
    methods = list(dict.fromkeys(t["method"]))
    columns = [(ds, d) for ds in datasets for d in DIRECTIONS]
    lookup = {(r["dataset"], r["method"]): r for _, r in t.iterrows()}
    rows = []
    for method in methods:
        cells = []
        for ds, d in columns:
            r = lookup.get((ds, method))
            key = metric.keys[d]
            cells.append(Cell(np.nan) if r is None else Cell(r[f"{key}_mean"], r[f"{key}_std"], r[f"{key}_n"],
                                                             bool(r[f"{key}_same"])))
        rows.append((method, cells))
    for j in range(len(columns)):
        _rank([cells[j] for _, cells in rows])
    families = [t[t["method"] == m]["family"].iloc[0] if "family" in t else m for m in methods]
    groups = [i for i in range(1, len(methods)) if families[i] != families[i - 1]]
    return Table(sweep, [(ds, DIR_TITLES[d]) for ds, d in columns], rows, groups)


def long_table(summary: pd.DataFrame, metric: Metric, sweep: str, extra: list[str] | None = None) -> Table:
    """One row per (dataset, method): I→T, T→I, Avg (and extra columns) and the seed count."""
    t = summary[summary["sweep"] == sweep].reset_index(drop=True)
    keys = [metric.keys[d] for d in DIRECTIONS] + list(extra or [])
    names = [DIR_TITLES[d] for d in DIRECTIONS] + ["Avg, test-selected (optimistic)" for _ in extra or []]
    rows = []
    for _, r in t.iterrows():
        cells = [Cell(r[f"{k}_mean"], r[f"{k}_std"], r[f"{k}_n"], bool(r[f"{k}_same"])) for k in keys]
        rows.append((f"{r['dataset']}\x1f{r['method']}", cells + [Cell(0, kind="plain", text=str(r["seeds"]))]))
    for ds in dict.fromkeys(t["dataset"]):
        idx = [i for i, (label, _) in enumerate(rows) if label.split("\x1f")[0] == ds]
        for j in range(len(keys)):
            _rank([rows[i][1][j] for i in idx])
    datasets = [label.split("\x1f")[0] for label, _ in rows]
    groups = [i for i in range(1, len(rows)) if datasets[i] != datasets[i - 1]]
    return Table(sweep, [("", f"{metric.title} {n}") for n in names] + [("", "seeds")], rows, groups,
                 stub="dataset\x1fmethod")


def ablation_table(df: pd.DataFrame, metric: Metric, sweep: str, test: str = "t", alpha: float = 0.05
                   ) -> Table | None:
    """Each variant's mean difference to its full model (Avg of the metric) per dataset, a paired
    test over the seeds both have, Holm-corrected across every test of the table; None when the
    sweep has no (variant, full model) pair on a dataset."""
    from bench.stats import MIN_PAIRS, TEST_NAMES, holm, paired_test

    d = df[df["sweep"] == sweep]
    key = metric.keys["avg"]
    if key not in d:
        return None
    datasets = list(dict.fromkeys(d["dataset"]))
    variants = [m for m in dict.fromkeys(d["method"])
                if (d[d["method"] == m]["method_name"].iloc[0]).startswith(d[d["method"] == m]["family"].iloc[0] + "/")]
    results: dict[tuple[str, str], Any] = {}
    skipped = []
    for method in variants:
        family = d[d["method"] == method]["family"].iloc[0]
        for ds in datasets:
            full = d[(d["dataset"] == ds) & (d["method_name"] == family)]
            var = d[(d["dataset"] == ds) & (d["method"] == method)]
            if var.empty or full.empty:
                continue
            if full["method"].nunique() > 1:
                skipped.append(f"{method} on {ds}: its full model has records of several configurations")
                continue
            paired = var.merge(full, on="seed", suffixes=("", "_full"))[[key, f"{key}_full"]].dropna()
            results[(method, ds)] = paired_test(paired[key].to_numpy(), paired[f"{key}_full"].to_numpy(), test)
    if not results:
        return None
    order = list(results)
    adjusted = dict(zip(order, holm([results[k].p for k in order])))
    rows, any_untested = [], False
    for method in variants:
        cells = []
        for ds in datasets:
            r = results.get((method, ds))
            if r is None:
                cells.append(Cell(np.nan, kind="delta"))
                continue
            p = adjusted[(method, ds)]
            mark = "*" if p is not None and p < alpha else ("†" if p is None else "")
            any_untested |= p is None
            cells.append(Cell(r.delta, kind="delta", mark=mark, n=r.pairs))
        if any(not np.isnan(c.mean) for c in cells):
            rows.append((method, cells))
    families = [d[d["method"] == m]["family"].iloc[0] for m, _ in rows]
    groups = [i for i in range(1, len(rows)) if families[i] != families[i - 1]]
    m = sum(p is not None for p in adjusted.values())
    pairs = sorted({r.pairs for r in results.values()})
    caption = (f"Ablation: {metric.title} (Avg of I→T and T→I) of each variant minus its full model, mean over "
               f"{'/'.join(map(str, pairs))} paired seeds; * Holm-adjusted p < {alpha} ({TEST_NAMES[test]} over "
               f"seeds, two-sided, {m} tests)")
    notes = [caption + "."]
    if any_untested:
        notes.append(f"† not tested: fewer than {MIN_PAIRS[test]} paired seeds, or the same difference on every "
                     "seed.")
    notes += [f"Left out: {s}." for s in skipped]
    table = Table(f"{sweep}: ablation", [("", ds) for ds in datasets], rows, groups, notes=notes,
                  caption=caption, stub="Variant", std=False)
    return table


def cost_table(summary: pd.DataFrame, sweep: str) -> Table:
    """Training time (s), parameter count and peak memory (MiB), mean over seeds, per dataset and method."""
    t = summary[summary["sweep"] == sweep].reset_index(drop=True)
    rows = []
    for _, r in t.iterrows():
        params = r.get("cost_params_mean", np.nan)
        rows.append((f"{r['dataset']}\x1f{r['method']}", [
            Cell(r["cost_fit_s_mean"], r["cost_fit_s_std"], r["cost_fit_s_n"], bool(r["cost_fit_s_same"]), digits=2),
            Cell(0, kind="plain", text="–" if np.isnan(params) else f"{int(params):,}"),
            Cell(0, kind="plain", text="–" if np.isnan(r["cost_peak_mb_mean"]) else f"{r['cost_peak_mb_mean']:.0f}"),
        ]))
    datasets = [label.split("\x1f")[0] for label, _ in rows]
    groups = [i for i in range(1, len(rows)) if datasets[i] != datasets[i - 1]]
    return Table(f"{sweep}: cost", [("", "train s"), ("", "parameters"), ("", "peak MiB")], rows, groups,
                 stub="dataset\x1fmethod",
                 notes=["Cost: fit time in seconds (mean ± std over seeds), trainable parameters, peak memory "
                        "(GPU when trained on one, else the process's peak resident memory so far)."])


# --- rendering -----------------------------------------------------------------------------


def _stub_names(table: Table) -> list[str]:
    return table.stub.split("\x1f")


def _body(table: Table, fmt: str, digits: int) -> tuple[list[str], list[list[str]]]:
    """Header names and string rows for tabulate (flat header: group and name joined)."""
    stub = _stub_names(table)
    head = stub + [f"{g} {n}".strip() for g, n in table.columns]
    rows = [[_esc(x, fmt) for x in label.split("\x1f")] + [c.render(fmt, digits, table.std) for c in cells]
            for label, cells in table.rows]
    return head, rows


def render_table(table: Table, fmt: str, digits: int = 4) -> str:
    """One table in markdown (tabulate pipe), plain (tabulate simple), latex (Styler) or html (Styler)."""
    from tabulate import tabulate

    if fmt in ("markdown", "plain"):
        head, rows = _body(table, fmt, digits)
        stub = len(_stub_names(table))
        text = tabulate(rows, head, tablefmt="pipe" if fmt == "markdown" else "simple", disable_numparse=True,
                        colalign=["left"] * stub + ["right"] * (len(head) - stub))
        title = f"### {table.title}" if fmt == "markdown" else table.title
        notes = "\n".join(table.notes)
        return f"{title}\n\n{text}" + (f"\n\n{notes}" if notes else "")
    if fmt == "latex":
        return _latex(table, digits)
    if fmt == "html":
        return _html(table, digits)
    raise BenchError(f"unknown report format '{fmt}'; use one of {', '.join(FORMATS)}")


def _frame(table: Table, fmt: str, digits: int) -> pd.DataFrame:
    """The table as a DataFrame of rendered strings, with (group, name) MultiIndex columns."""
    stub = _stub_names(table)
    labels = [[_esc(x, fmt) for x in label.split("\x1f")] for label, _ in table.rows]
    for prev, cur in zip(labels[::-1][1:], labels[::-1][:-1]):  # a repeated first level is printed once
        if len(cur) > 1 and cur[0] == prev[0]:
            cur[0] = ""
    index = pd.MultiIndex.from_tuples([tuple(x) for x in labels]) if len(stub) > 1 else \
        pd.Index([x[0] for x in labels])
    heads = [(_esc(g, fmt), _esc(n, fmt) if fmt != "latex" else _latex_head(n)) for g, n in table.columns]
    grouped = any(g for g, _ in table.columns)
    columns = pd.MultiIndex.from_tuples(heads) if grouped else pd.Index([n for _, n in heads])
    return pd.DataFrame([[c.render(fmt, digits, table.std) for c in cells] for _, cells in table.rows],
                        index=index, columns=columns)


def _latex_head(name: str) -> str:
    return _esc(name, "latex")


def _latex(table: Table, digits: int) -> str:
    """A complete `table` environment: caption, label, booktabs rules, \\midrule between groups."""
    frame = _frame(table, "latex", digits)
    stub = len(_stub_names(table))
    caption = table.caption or table.title
    latex = frame.style.to_latex(
        hrules=True, multicol_align="c", caption=_esc(caption, "latex"), label=table.label or None,
        position="t", position_float="centering", column_format="l" * stub + "c" * len(table.columns),
        environment="table", sparse_index=False)
    lines = latex.splitlines()
    # \cmidrule under each dataset of a two-level header
    if any(g for g, _ in table.columns):
        spans, col = [], stub + 1
        for g in dict.fromkeys(g for g, _ in table.columns):
            width = sum(1 for h, _ in table.columns if h == g)
            spans.append(f"\\cmidrule(lr){{{col}-{col + width - 1}}}")
            col += width
        top = next(i for i, line in enumerate(lines) if line.startswith("\\toprule"))
        lines.insert(top + 2, " ".join(spans))
    # \midrule before the first row of each group
    first = next(i for i, line in enumerate(lines) if line.startswith("\\midrule")) + 1
    for offset in sorted(table.groups, reverse=True):
        lines.insert(first + offset, "\\midrule")
    notes = [n for n in table.notes if n.rstrip(".") != caption]
    if any(r.n <= 1 for _, cells in table.rows for r in cells if r.kind == "stat" and not np.isnan(r.mean)):
        notes.append(r"$^\dagger$ one seed: no standard deviation.")
    if any(r.same and r.n > 1 for _, cells in table.rows for r in cells if r.kind == "stat"):
        notes.append(r"$^\ddagger$ the same value for every seed (deterministic).")
    end = next(i for i, line in enumerate(lines) if line.startswith("\\end{tabular}"))
    wide = len(table.columns) + stub > 5
    if wide:  # scaled to the text width: six or more columns overflow a paper's column
        begin = next(i for i, line in enumerate(lines) if line.startswith("\\begin{tabular}"))
        lines.insert(end + 1, "}")
        lines.insert(begin, "\\resizebox{\\linewidth}{!}{%")
        end += 2
    if table.std and any(c.rank for _, cells in table.rows for c in cells):
        notes.insert(0, "Mean$_{\\pm\\mathrm{std}}$ over seeds (sample standard deviation); best in bold, "
                        "second underlined.")
    if notes:
        lines.insert(end + 1, "\\par\\smallskip{\\footnotesize " + " ".join(
            n if n.startswith(("$^", "Mean$")) else _esc(n, "latex") for n in notes) + "}")
    packages = "booktabs" + (",graphicx" if wide else "")
    header = [f"% Generated by `bench report`. Needs \\usepackage{{{packages}}} in the preamble (booktabs: \\toprule, "
              "\\midrule, \\cmidrule, \\bottomrule" + ("; graphicx: \\resizebox" if wide else "")
              + "); \\textbf and \\underline are built in."]
    return "\n".join(header + lines)


def _html(table: Table, digits: int) -> str:
    frame = _frame(table, "html", digits)
    body = frame.style.set_table_attributes('class="bench"').to_html()
    notes = "".join(f"<p class=\"note\">{_esc(n, 'html')}</p>" for n in table.notes)
    return f"<h3>{_esc(table.title, 'html')}</h3>\n{body}{notes}"


# --- what is missing -----------------------------------------------------------------------


def missing_notes(records: list[dict[str, Any]], df: pd.DataFrame, sweep: str, keys: set[str] | None = None,
                  expected: dict[str, tuple[str, str, int]] | None = None) -> list[str]:
    """Lines naming the failed runs (no ok record of the same run key), the runs of the sweep file
    without any record, and the seeds a method lacks compared with the others on its dataset."""
    lines = []
    ok_keys = {r["key"] for r in records if r.get("status") == "ok"}
    newest: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec["spec"]["sweep"] != sweep or (keys is not None and rec["key"] not in keys):
            continue
        if rec.get("status") == "failed" and rec["key"] not in ok_keys:
            if rec.get("finished", "") >= newest.get(rec["key"], {}).get("finished", ""):
                newest[rec["key"]] = rec
    for rec in newest.values():
        s = rec["spec"]
        lines.append(f"failed: {s['dataset_label']} | {s['method_label']} | seed {s['seed']}: "
                     f"{(rec.get('reason') or '').strip()}")
    if expected:
        have = {r["key"] for r in records}
        lacking: dict[tuple[str, str], list[str]] = {}
        for key, (dataset, method, seed) in expected.items():
            if key not in have:
                lacking.setdefault((dataset, method), []).append(str(seed))
        lines += [f"missing (no record of the sweep file's current definition; `bench run` makes it): "
                  f"{dataset} | {method} | seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"
                  for (dataset, method), seeds in lacking.items()]
    d = df[df["sweep"] == sweep]
    for ds, g in d.groupby("dataset", sort=False):
        all_seeds = set(g["seed"])
        for method, gm in g.groupby("method", sort=False):
            lacking = sorted(all_seeds - set(gm["seed"]))
            if lacking:
                lines.append(f"missing seeds: {method} on {ds} lacks seed(s) {', '.join(map(str, lacking))} that "
                             "other methods on this dataset have")
    return lines


# --- the command ---------------------------------------------------------------------------


@dataclass
class Report:
    """Everything `bench report` shows for a set of sweeps, before rendering."""

    sweeps: list[str]
    tables: dict[str, list[Table]]
    notes: dict[str, list[str]]
    metric: Metric


def build(results: Path, sweeps: list[str] | None = None, keys: set[str] | None = None, *,
          layout: str = "paper", metric: str = "map", caption: str | None = None, label: str | None = None,
          cost: bool = False, test: str = "t", expected: dict[str, tuple[str, str, int]] | None = None
          ) -> Report:
    """Read the records and assemble the tables and notes of each sweep."""
    if layout not in LAYOUTS:
        raise BenchError(f"unknown layout '{layout}'; use paper or long")
    m = parse_metric(metric)
    records = iter_records(results, sweeps)
    df = records_frame(records, keys)
    if df.empty:
        where = ", ".join(sweeps) if sweeps else str(results)
        raise BenchError(f"no finished runs found for {where}; run `bench run SWEEP.yaml` first")
    if m.keys["i2t"] not in df or df[m.keys["i2t"]].isna().all():
        why = {reason for u in df.get("undefined", []) for k, reason in json.loads(u).items()
               if k in m.keys.values()}
        because = f" ({'; '.join(sorted(why))})" if why else ""
        raise BenchError(f"no record holds metric '{m.name}'{because}; available: {', '.join(available_metrics(df))}")
    extra = [OPTIMISTIC] if OPTIMISTIC in df and df[OPTIMISTIC].notna().any() else []
    cost_cols = ["cost_fit_s", "cost_params", "cost_peak_mb"] if cost else []
    summary = summarise(df, [m.keys[d] for d in DIRECTIONS] + extra + cost_cols)
    tables: dict[str, list[Table]] = {}
    notes: dict[str, list[str]] = {}
    names = list(dict.fromkeys(df["sweep"]))
    for sweep in names:
        main = paper_table(summary, m, sweep) if layout == "paper" else long_table(summary, m, sweep, extra)
        main.caption = caption or (f"{m.title} on the test split, mean ± sample std over seeds; best in bold, "
                                   "second underlined")
        main.label = label or ""
        if extra and layout == "paper":
            main.notes.append("Test-selected (optimistic) figures are recorded; `--layout long` shows them.")
        main.notes += [n for sw, n in df.attrs.get("config_notes", []) if sw == sweep]
        sweep_tables = [main]
        ablation = ablation_table(df, m, sweep, test=test)
        if ablation is not None:
            ablation.label = f"{label}-ablation" if label else ""
            sweep_tables.append(ablation)
        if cost:
            sweep_tables.append(cost_table(summary, sweep))
        tables[sweep] = sweep_tables
        notes[sweep] = missing_notes(records, df, sweep, keys, expected)
    return Report(names, tables, notes, m)


def render(rep: Report, fmt: str = "markdown", digits: int = 4, figures: list[Path] | None = None) -> str:
    """The report as text (markdown, plain, latex), csv (the summary) or one self-contained html page."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown report format '{fmt}'; use one of {', '.join(FORMATS)}")
    if fmt == "html":
        from bench.report_html import page

        return page(rep, digits, figures or [])
    parts = []
    for sweep in rep.sweeps:
        for table in rep.tables[sweep]:
            parts.append(render_table(table, fmt, digits))
        if rep.notes[sweep]:
            mark = "% " if fmt == "latex" else ""
            parts.append("\n".join(f"{mark}{line}" for line in rep.notes[sweep]))
    return "\n\n".join(parts) + "\n"


def summary_csv(results: Path, sweeps: list[str] | None, keys: set[str] | None, metric: str = "map") -> str:
    """The per-(sweep, dataset, method) summary as CSV (mean, std, n per column)."""
    m = parse_metric(metric)
    df = records_frame(iter_records(results, sweeps), keys)
    if df.empty:
        raise BenchError(f"no finished runs found for {', '.join(sweeps) if sweeps else results}; "
                         "run `bench run SWEEP.yaml` first")
    cols = [m.keys[d] for d in DIRECTIONS]
    table = summarise(df, cols)
    keep = ["sweep", "dataset", "method", "seeds"] + [f"{c}_{s}" for c in cols for s in ("mean", "std")]
    return table[keep].to_csv(index=False)


def report(results: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
           fmt: str = "markdown", digits: int = 4, **options: Any) -> str:
    """Render the report of the given sweeps (all under `results` when None); see `build` for options."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown report format '{fmt}'; use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return summary_csv(results, sweeps, keys, options.get("metric", "map"))
    figures = options.pop("figures", None)
    return render(build(results, sweeps, keys, **options), fmt, digits, figures)


# Figures live in bench.report_figures; kept importable from here.
from bench.report_figures import mean_pr_curves, pr_figures  # noqa: E402,F401
