"""The report as CSV, for a spreadsheet or a plotting script.

- **summary** (`--format csv`): one row per (sweep, dataset, configuration): seeds, mean and
  sample std of each direction of the metric, `spread` (`n=1`, `deterministic` or empty), and
  with `--stats` the ablation columns of each variant row; published numbers (`--against`) are
  rows of `kind` `published` with their source.
- **per seed** (`--format csv --layout long`, or `--per-seed`): one row per (sweep, dataset,
  method, configuration, seed) with the configuration id, the parameters that differ between the
  configurations of a method, the metric, epochs, cost columns, and for a variant its difference
  to the full model on that seed with the comparison's p-value, Holm-adjusted p-value and 95 %
  interval.

Numbers are written with 10 significant digits: no float noise (a mean of identical values is
that value and its std is 0, never 1e-16).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.report_ablation import Comparison
from bench.report_configs import short_key
from bench.report_frame import DIRECTIONS, Metric
from bench.report_published import Published

FLOAT_FORMAT = "%.10g"


def _spread(row: Any, key: str) -> str:
    if row[f"{key}_n"] <= 1:
        return "n=1"
    return "deterministic" if row[f"{key}_same"] else ""


def _ablation_columns(found: list[Comparison]) -> dict[tuple[str, str, str], dict[str, Any]]:
    cols = {}
    for c in found:
        ci = c.result.ci or (None, None)
        cols[(c.sweep, c.dataset, c.variant)] = {
            "delta_vs_full": 0.0 if c.identical else c.result.delta, "pairs": c.result.pairs, "p": c.result.p,
            "p_holm": c.p_holm, "ci_low": ci[0], "ci_high": ci[1],
            "test_note": "identical" if c.identical else c.result.why_not}
    return cols


def summary_csv(summary: pd.DataFrame, metric: Metric, found: list[Comparison] | None = None,
                published: list[Published] | None = None) -> str:
    """One row per (sweep, dataset, configuration); `found` adds the ablation columns (--stats)."""
    keys = [metric.keys[d] for d in DIRECTIONS]
    rows = []
    ablation = _ablation_columns(found or [])
    for _, r in summary.iterrows():
        row = {"sweep": r["sweep"], "dataset": r["dataset"], "method": r["method"], "seeds": r["seeds"]}
        for k in keys:
            row.update({f"{k}_mean": r[f"{k}_mean"], f"{k}_std": r[f"{k}_std"]})
        row["spread"] = _spread(r, keys[-1])
        row["kind"] = "measured"
        if found is not None:
            row.update(ablation.get((r["sweep"], r["dataset"], r["method"]), {}))
        rows.append(row)
    for e in [e for e in published or [] if e.metric == metric.name]:
        rows.append({"sweep": "", "dataset": e.dataset, "method": e.method, "seeds": "",
                     **{f"{metric.keys[d]}_mean": e.values[d] for d in DIRECTIONS}, "kind": "published",
                     "source": f"{e.paper}; {e.table}; protocol {e.protocol}"})
    return pd.DataFrame(rows).to_csv(index=False, float_format=FLOAT_FORMAT)


def differing_parameters(df: pd.DataFrame, identities: dict[str, dict[str, dict[str, str]]]) -> list[str]:
    """Configuration keys whose value differs between two runs of one family (a method, its
    variants and their configurations, on any dataset)."""
    keys: list[str] = []
    for _, g in df.groupby("family", sort=False):
        flats = [{**identities["m"][m], **identities["d"][d]} for m, d in zip(g["mconfig"], g["dconfig"])]
        for k in sorted({k for f in flats for k in f}):
            if len({f.get(k) for f in flats}) > 1 and k not in keys:
                keys.append(k)
    return keys


def _value(flat: dict[str, str], key: str) -> str:
    value = flat.get(key, "")
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def per_seed_csv(df: pd.DataFrame, metric: Metric, found: list[Comparison]) -> str:
    """One row per (sweep, dataset, method, configuration, seed)."""
    identities = df.attrs.get("identities", {"m": {}, "d": {}})
    params = differing_parameters(df, identities)
    ablation = _ablation_columns(found)
    deltas = {(c.sweep, c.dataset, c.variant, s): d for c in found for s, d in c.deltas.items()}
    keys = list(dict.fromkeys([metric.keys[d] for d in DIRECTIONS] + ["map_i2t", "map_t2i", "map_avg"]))
    rows = []
    for row in df.to_dict("records"):
        flat = {**identities["m"].get(row["mconfig"], {}), **identities["d"].get(row["dconfig"], {})}
        out = {"sweep": row["sweep"], "dataset": row["dataset"], "method": row["method"],
               "method_name": row["method_name"], "configuration": row["config"], "seed": row["seed"],
               "split_seed": row["split_seed"]}
        out.update({f"param.{short_key(k)}": _value(flat, k) for k in params})
        out.update({k: row.get(k) for k in keys})
        out.update(best_epoch=row.get("best_epoch"), last_epoch=row.get("last_epoch"), fit_s=row.get("cost_fit_s"),
                   parameters=row.get("cost_params"), peak_mb=row.get("cost_peak_mb"),
                   peak_kind=row.get("cost_peak_kind"))
        comparison = ablation.get((row["sweep"], row["dataset"], row["method"]), {})
        out["delta_vs_full_this_seed"] = deltas.get((row["sweep"], row["dataset"], row["method"], row["seed"]))
        out.update({k: comparison.get(k) for k in ("pairs", "p", "p_holm", "ci_low", "ci_high", "test_note")})
        out["record"] = row["key"]
        rows.append(out)
    return pd.DataFrame(rows).to_csv(index=False, float_format=FLOAT_FORMAT)
