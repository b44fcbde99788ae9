"""The ablation table: each variant (`family/variant`) minus its full model, per dataset.

Pairs are the seeds both have; `bench.stats` gives the paired test (t or Wilcoxon), the Holm
adjustment across every test of the table and the 95 % t-interval of the mean difference. A
variant whose results equal its full model's on every paired seed, to the last bit, is shown as
`identical` (the component it removes does nothing on this data) and is not a test. The caption
names the test, the number of tests and the split protocol the seeds share (one fixed split,
or a split per seed), which says what the seed-to-seed spread contains. `stats_table` (`--stats`)
lists every comparison with its p-value, adjusted p-value and interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.report_cells import Cell, Table
from bench.report_frame import Metric
from bench.report_names import Names
from bench.report_tables import blocks
from bench.stats import MIN_PAIRS, TEST_NAMES, PairedResult, holm, paired_test


@dataclass
class Comparison:
    """One (variant, dataset) pair of the ablation: the paired result and what the table shows."""

    sweep: str
    variant: str
    dataset: str
    family: str
    result: PairedResult
    identical: bool = False
    p_holm: float | None = None
    deltas: dict[int, float] = field(default_factory=dict)  # seed -> variant minus full model


def _variants(d: pd.DataFrame) -> list[str]:
    firsts = d.drop_duplicates("method")
    return [r.method for r in firsts.itertuples() if str(r.method_name).startswith(f"{r.family}/")]


def _compare(var: pd.DataFrame, full: pd.DataFrame, metric: Metric, test: str) -> tuple[PairedResult, bool, dict]:
    key, i2t, t2i = metric.keys["avg"], metric.keys["i2t"], metric.keys["t2i"]
    cols = [c for c in dict.fromkeys([key, i2t, t2i]) if c in var and c in full]
    paired = var[["seed", *cols]].merge(full[["seed", *cols]], on="seed", suffixes=("", "_full")).dropna()
    identical = len(paired) > 0 and all((paired[c] == paired[f"{c}_full"]).all() for c in cols)
    deltas = dict(zip(paired["seed"].astype(int), paired[key] - paired[f"{key}_full"]))
    result = paired_test(paired[key].to_numpy(), paired[f"{key}_full"].to_numpy(), test)
    if identical:
        result = PairedResult(0.0, result.pairs, None, "identical to the full model on every seed")
    return result, identical, deltas


def comparisons(df: pd.DataFrame, metric: Metric, sweep: str, test: str = "t"
                ) -> tuple[list[Comparison], list[str]]:
    """Every (variant, dataset) comparison of a sweep with Holm-adjusted p-values, and the pairs
    left out (a full model with records of several configurations)."""
    d = df[df["sweep"] == sweep]
    if metric.keys["avg"] not in d:
        return [], []
    out, skipped = [], []
    for method in _variants(d):
        family = d[d["method"] == method]["family"].iloc[0]
        for ds in dict.fromkeys(d["dataset"]):
            full = d[(d["dataset"] == ds) & (d["method_name"] == family)]
            var = d[(d["dataset"] == ds) & (d["method"] == method)]
            if var.empty or full.empty:
                continue
            if full["method"].nunique() > 1:
                skipped.append(f"{method} on {ds}: its full model has records of several configurations")
                continue
            result, identical, deltas = _compare(var, full, metric, test)
            out.append(Comparison(sweep, method, ds, family, result, identical, deltas=deltas))
    for c, p in zip(out, holm([c.result.p for c in out])):
        c.p_holm = p
    return out, skipped


def split_protocol(df: pd.DataFrame, sweep: str) -> str:
    """What the seeds of the sweep's runs share: one fixed split or a split per seed, per dataset."""
    d = df[df["sweep"] == sweep]
    modes: dict[str, list[str]] = {}
    for ds, g in d.groupby("dataset", sort=False):
        split = g["split_seed"]
        if split.isna().all():
            mode = "an unrecorded split"
        elif g["seed"].nunique() > 1 and (split == g["seed"]).all():
            mode = "its own split (split seed = training seed; the spread includes the split)"
        elif split.nunique() == 1:
            mode = f"one fixed split (split seed {split.iloc[0]}; the spread is the training seed's alone)"
        else:
            mode = "splits that vary between runs"
        modes.setdefault(mode, []).append(ds)
    if len(modes) == 1:
        return f"every seed uses {next(iter(modes))}"
    return "; ".join(f"{', '.join(ds)}: {mode}" for mode, ds in modes.items())


def ablation_table(df: pd.DataFrame, metric: Metric, sweep: str, test: str = "t", alpha: float = 0.05,
                   names: Names | None = None, found: list[Comparison] | None = None,
                   skipped: list[str] | None = None) -> Table | None:
    """Rows = variants, columns = datasets: mean difference to the full model with `*` where the
    Holm-adjusted p < alpha, `§` where it could not be tested, `identical` where nothing changed;
    None when the sweep has no (variant, full model) pair on a dataset."""
    names = names or Names()
    if found is None:
        found, skipped = comparisons(df, metric, sweep, test)
    if not found:
        return None
    d = df[df["sweep"] == sweep]
    datasets = list(dict.fromkeys(c.dataset for c in found))
    ordered = [dataset for dataset in dict.fromkeys(d["dataset"]) if dataset in datasets]
    by = {(c.variant, c.dataset): c for c in found}
    variants = list(dict.fromkeys(c.variant for c in found))
    rows = [(names.method(v), [_cell(by.get((v, ds)), alpha) for ds in ordered]) for v in variants]
    tested = sum(c.result.p is not None for c in found)
    pairs = sorted({c.result.pairs for c in found})
    caption = (f"Ablation: {metric.title} (Avg of I→T and T→I) of each variant minus its full model, mean over "
               f"{'/'.join(map(str, pairs))} paired seeds; {split_protocol(d, sweep)}; * Holm-adjusted p < {alpha} "
               f"({TEST_NAMES[test]} over seeds, two-sided, {tested} tests)")
    notes = [caption + "."]
    if any(c.result.p is None and not c.identical for c in found):
        notes.append(f"§ not tested: fewer than {MIN_PAIRS[test]} paired seeds, or the same difference on every "
                     "seed.")
    if any(c.identical for c in found):
        notes.append("identical: the variant's results equal its full model's on every paired seed, to the last "
                     "bit (what it removes does nothing on this data); not a test.")
    notes += [f"Left out: {s}." for s in skipped or []]
    families = [by[(v, next(ds for ds in ordered if (v, ds) in by))].family for v in variants]
    return Table(f"{sweep}: variants − full model", [("", names.dataset(ds)) for ds in ordered], rows,
                 blocks(families), notes=notes, caption=caption, stub="Variant", std=False)


def _cell(c: Comparison | None, alpha: float) -> Cell:
    if c is None:
        return Cell(np.nan, kind="delta")
    if c.identical:
        return Cell(0.0, kind="plain", text="identical", n=c.result.pairs)
    p = c.p_holm
    mark = "*" if p is not None and p < alpha else ("§" if p is None else "")
    return Cell(c.result.delta, kind="delta", mark=mark, n=c.result.pairs)


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def stats_table(found: list[Comparison], sweep: str, digits: int = 4, names: Names | None = None) -> Table:
    """`--stats`: every comparison with its mean difference, pairs, p-value, Holm-adjusted p-value
    and the 95 % t-interval of the mean difference."""
    names = names or Names()
    rows = []
    for c in found:
        r = c.result
        ci = "–" if r.ci is None else f"[{r.ci[0]:+.{digits}f}, {r.ci[1]:+.{digits}f}]".replace("-", "−")
        delta = "identical" if c.identical else f"{r.delta:+.{digits}f}".replace("-", "−")
        rows.append((f"{names.method(c.variant)}\x1f{names.dataset(c.dataset)}", [
            Cell(0, kind="plain", text=delta), Cell(0, kind="plain", text=str(r.pairs)),
            Cell(0, kind="plain", text=_p(r.p)), Cell(0, kind="plain", text=_p(c.p_holm)),
            Cell(0, kind="plain", text=ci), Cell(0, kind="plain", text=r.why_not or "")]))
    caption = ("Statistics of the ablation: mean difference (variant minus full model), paired seeds, two-sided "
               "p-value, Holm-adjusted p-value over the table's tests, 95 % t-interval of the mean difference")
    return Table(f"{sweep}: ablation statistics",
                 [("", "Δ mean"), ("", "pairs"), ("", "p"), ("", "Holm p"), ("", "95% CI"), ("", "not tested")],
                 rows, stub="variant\x1fdataset", caption=caption, notes=[caption + "."], std=False)
