"""`bench report --diag`: what each component of a model does to its common space, from the
numbers every run kept with its embeddings (`bench.run_diag`), never re-training.

- **Modality gap** (one row per dataset and configuration): the report's metric (Avg) beside the
  accuracy of a cross-validated linear probe telling image from text embeddings (0.5: the two
  modalities cannot be told apart; 1.0: a hyperplane separates them), the distance between the two
  modality centroids, and Wang and Isola's alignment (mean squared distance of an item's two
  embeddings; lower is closer) and uniformity (log of the mean Gaussian potential between items
  of one modality; lower is spread more evenly), on L2-normalised embeddings of the saved sample.
- **Ablation of the gap**: each variant minus its full model in the metric, the probe accuracy,
  the centroid distance and the alignment, seed-paired, with `*` where the Holm-adjusted p (within
  each measure) is below 0.05: does removing the dual GANs widen the gap?
- **Per label** (one table per dataset): AP of the queries that carry each label (mean of the two
  directions, among the sampled items), per configuration, and each variant's seed-paired
  difference to its full model: which labels a component helps. With one label per item this is
  the AP per class.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from bench.diagnostics import LabelAP, mean_label_ap, per_label_difference
from bench.report_ablation import Comparison, comparisons
from bench.report_cells import Cell, Table
from bench.report_frame import Metric
from bench.report_names import Names
from bench.report_tables import stat_cell
from bench.stats import TEST_NAMES

GAP = (("probe_acc", "probe acc."), ("centroid_dist", "centroid dist."), ("align", "alignment"),
       ("uniform_img", "uniformity img"), ("uniform_txt", "uniformity txt"))
GAP_DELTAS = ("probe_acc", "centroid_dist", "align")
GAP_CAPTION = ("probe acc.: cross-validated accuracy of a linear probe telling image from text embeddings "
               "(0.5 = indistinguishable); centroid dist.: distance between the modality centroids; alignment: "
               "mean squared distance of an item's two embeddings (lower = closer); uniformity: log mean "
               "Gaussian potential within a modality (lower = more uniform); all on L2-normalised embeddings "
               "of the saved test sample")


def diag_columns() -> list[str]:
    """The frame columns the diagnostics occupy (`bench.report_frame` adds them from the records)."""
    return [f"diag_{key}" for key, _ in GAP]


def has_diagnostics(df: pd.DataFrame, sweep: str) -> bool:
    """Whether some run of the sweep kept its diagnostics."""
    col = "diag_probe_acc"
    return col in df and df[df["sweep"] == sweep][col].notna().any()


def gap_table(summary: pd.DataFrame, metric: Metric, sweep: str, names: Names) -> Table:
    """One row per (dataset, configuration): the metric's Avg and each modality-gap figure, mean ± std."""
    t = summary[summary["sweep"] == sweep]
    t = t[t["diag_probe_acc_n"] > 0] if "diag_probe_acc_n" in t else t.iloc[0:0]
    rows = []
    for _, r in t.iterrows():
        cells = [stat_cell(r, metric.keys["avg"])] + [stat_cell(r, f"diag_{key}") for key, _ in GAP]
        rows.append((f"{names.dataset(r['dataset'])}\x1f{names.method(r['method'])}", cells))
    datasets = [label.split("\x1f")[0] for label, _ in rows]
    groups = [i for i in range(1, len(rows)) if datasets[i] != datasets[i - 1]]
    caption = f"Modality gap beside {metric.title} (Avg), mean ± std over seeds; {GAP_CAPTION}"
    columns = [("", f"{metric.title} Avg")] + [("", title) for _, title in GAP]
    return Table(f"{sweep}: modality gap", columns, rows, groups, notes=[caption + "."], caption=caption,
                 stub="dataset\x1fmethod")


def _measure(key: str, title: str) -> Metric:
    column = f"diag_{key}"
    return Metric(key, title, {"i2t": column, "t2i": column, "avg": column})


def gap_ablation_table(df: pd.DataFrame, metric: Metric, sweep: str, names: Names, test: str = "t",
                       alpha: float = 0.05) -> Table | None:
    """Rows = variants, columns = dataset x (Δ metric, Δ probe acc., Δ centroid dist., Δ alignment)."""
    measures = [(metric, f"Δ {metric.title}")] + [(_measure(k, t), f"Δ {t}") for k, t in GAP if k in GAP_DELTAS]
    found: list[tuple[str, dict[tuple[str, str], Comparison]]] = []
    for m, title in measures:
        if m.keys["avg"] not in df:
            continue
        comps, _skipped = comparisons(df, m, sweep, test)
        found.append((title, {(c.variant, c.dataset): c for c in comps if not np.isnan(c.result.delta)}))
    if len(found) < 2 or not found[1][1]:
        return None
    datasets = list(dict.fromkeys(ds for _, by in found for _, ds in by))
    variants = list(dict.fromkeys(v for _, by in found for v, _ in by))
    columns = [(names.dataset(ds), title) for ds in datasets for title, _ in found]
    rows = [(names.method(v), [_delta(by.get((v, ds)), alpha) for ds in datasets for _, by in found])
            for v in variants]
    caption = (f"Variants minus their full model: {metric.title} (Avg) and the modality gap, mean over paired "
               f"seeds; * Holm-adjusted p < {alpha} ({TEST_NAMES[test]}, Holm within each measure); a positive "
               "Δ probe acc. or Δ centroid dist. means the variant's modalities are further apart")
    return Table(f"{sweep}: modality gap, variants − full model", columns, rows, notes=[caption + "."],
                 caption=caption, stub="Variant", std=False)


def _delta(c: Comparison | None, alpha: float) -> Cell:
    if c is None:
        return Cell(np.nan, kind="delta")
    if c.identical:
        return Cell(0.0, kind="plain", text="identical")
    mark = "*" if c.p_holm is not None and c.p_holm < alpha else ""
    return Cell(c.result.delta, kind="delta", mark=mark, n=c.result.pairs)


# --- per label ----------------------------------------------------------------------------------


def _label_ap(diag: dict[str, Any], items: int) -> LabelAP | None:
    """The per-label AP a record kept (over `items` sampled items), or None."""
    try:
        i2t = np.array([np.nan if v is None else v for v in diag["label_ap_i2t"]], dtype=float)
        t2i = np.array([np.nan if v is None else v for v in diag["label_ap_t2i"]], dtype=float)
        count = np.asarray(diag["label_count"], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        return None
    if not (i2t.shape == t2i.shape == count.shape) or i2t.ndim != 1:
        return None
    return LabelAP(i2t, t2i, count, count / max(1, items))


def per_label(df: pd.DataFrame, records: dict[str, dict[str, Any]], sweep: str
              ) -> Iterator[tuple[str, list[str], dict[str, dict[int, LabelAP]], pd.DataFrame]]:
    """Per dataset of the sweep: (dataset, label names, {method: {seed: LabelAP}}, its frame rows)."""
    d = df[df["sweep"] == sweep]
    for dataset, g in d.groupby("dataset", sort=False):
        runs: dict[str, dict[int, LabelAP]] = {}
        label_names: list[str] = []
        for row in g.itertuples():
            rec = records.get(row.key) or {}
            diag = rec.get("diagnostics") or {}
            ap = _label_ap(diag, int((rec.get("embeddings") or {}).get("items") or 0))
            if ap is not None:
                runs.setdefault(row.method, {})[int(row.seed)] = ap
                label_names = label_names or [str(n) for n in diag.get("label_names", [])]
        if runs:
            yield dataset, label_names, runs, g


def label_table(dataset: str, label_names: list[str], runs: dict[str, dict[int, LabelAP]], rows: pd.DataFrame,
                sweep: str, names: Names) -> Table:
    """Rows = labels (most carried first), columns = each configuration's AP (mean ± std over seeds)
    and each variant's seed-paired difference to its full model."""
    methods = list(runs)
    first = next(iter(next(iter(runs.values())).values()))
    order = np.argsort(-first.count, kind="stable")
    means = {m: mean_label_ap(list(r.values())) for m, r in runs.items()}
    spreads = {m: np.nanstd([ap.mean for ap in r.values()], axis=0, ddof=1) if len(r) > 1 else None
               for m, r in runs.items()}
    deltas = label_deltas(runs, rows)
    columns = [("", "items")] + [("AP", names.method(m)) for m in methods] + [("Δ AP", names.method(v))
                                                                              for v in deltas]
    body = []
    for i in order:
        cells = [Cell(0, kind="plain", text=str(int(first.count[i])))]
        for m in methods:
            values = [ap.mean[i] for ap in runs[m].values()]
            std = spreads[m][i] if spreads[m] is not None else np.nan
            cells.append(Cell(float(means[m].mean[i]), float(std), len(values),
                              same=len(values) > 1 and bool(np.ptp(values) == 0)))
        cells += [Cell(float(delta.mean[i]), kind="delta") for delta in deltas.values()]
        name = label_names[i] if i < len(label_names) else f"label {i}"
        body.append((name, cells))
    caption = (f"{names.dataset(dataset)}: AP of the queries carrying each label (mean of I→T and T→I, retrieval "
               "among the saved test sample), mean ± std over seeds; Δ AP: a variant minus its full model, "
               "seed-paired (positive: the variant does better on that label)")
    return Table(f"{sweep}: per label, {names.dataset(dataset)}", columns, body, notes=[caption + "."],
                 caption=caption, stub="Label")


def label_deltas(runs: dict[str, dict[int, LabelAP]], rows: pd.DataFrame) -> dict[str, Any]:
    """{variant: LabelDelta to its full model} for each variant whose full model is in `runs`."""
    out = {}
    firsts = rows.drop_duplicates("method")
    for r in firsts.itertuples():
        if not str(r.method_name).startswith(f"{r.family}/") or r.method not in runs:
            continue
        full = firsts[firsts["method_name"] == r.family]["method"]
        if len(full) != 1 or full.iloc[0] not in runs:
            continue
        try:
            out[r.method] = per_label_difference({s: ap.mean for s, ap in runs[r.method].items()},
                                                 {s: ap.mean for s, ap in runs[full.iloc[0]].items()})
        except ValueError:  # no shared seed, or samples of different labels
            continue
    return out


def diag_tables(df: pd.DataFrame, summary: pd.DataFrame, records: dict[str, dict[str, Any]], metric: Metric,
                sweep: str, names: Names, test: str = "t") -> list[tuple[str, Table]]:
    """Every diagnostics table of a sweep with its LaTeX label suffix (`-gap`, `-gap-ablation`,
    `-labels-<dataset>`); none when no run kept its embeddings."""
    if not has_diagnostics(df, sweep):
        return []
    tables = [("-gap", gap_table(summary, metric, sweep, names))]
    ablation = gap_ablation_table(df, metric, sweep, names, test)
    tables += [("-gap-ablation", ablation)] if ablation is not None else []
    for dataset, label_names, runs, rows in per_label(df, records, sweep):
        tables.append((f"-labels-{dataset}", label_table(dataset, label_names, runs, rows, sweep, names)))
    return tables
