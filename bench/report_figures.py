"""Report figures from records (PNG and PDF), per (sweep, dataset), methods overlaid:

- PR curves, mean over seeds with a ±1 std band of the precision;
- precision@K against K (log axis), drawn from the precision at the rank cutoffs of the stored
  PR curve (up to 100 cutoffs, rebuilt from the record's `n_retrieval` as `bench.metrics` chose
  them); records without a PR curve fall back to their `p@K` scalars. A curve of 20 points or
  fewer gets a marker on each point. The PR curve averages precision over the queries that have a
  relevant item; the `p@K` scalars over all queries (the same when every query has one);
- validation mAP and training loss per epoch, and label-adjacency heatmaps (`bench.report_epochs`).

The runs are the ones the tables use (`bench.report_frame.records_frame`): newest per seed,
configurations never mixed, rows labelled as in the tables; one style per method for the whole
report (`bench.report_style`); legends sit outside the axes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.report_epochs import draw_adjacency, draw_epochs
from bench.report_frame import records_frame
from bench.report_plot import FORMATS, Curves, Figure, FigureSource, figure_source, legend_outside, pyplot, safe, save

PR_DIRECTIONS = (("pr_i2t", "image → text"), ("pr_t2i", "text → image"))
FEW_POINTS = 20  # curves with at most this many points get a marker on each


def per_seed_pr(records: list[dict[str, Any]], keys: set[str] | None = None
                ) -> dict[tuple[str, str], dict[str, dict[str, list[dict[str, list[float]]]]]]:
    """{(sweep, dataset): {method: {"pr_i2t"/"pr_t2i": [curve per seed]}}}, in table order."""
    return _per_seed_pr(FigureSource(records_frame(records, keys), {r["key"]: r for r in records}))


def _per_seed_pr(source: FigureSource) -> dict:
    out: dict = {}
    for group, method, rec in source.runs():
        for direction, _ in PR_DIRECTIONS:
            pr = rec.get("metrics", {}).get(direction)
            if pr and "precision" in pr and "recall" in pr:
                out.setdefault(group, {}).setdefault(method, {}).setdefault(direction, []).append(pr)
    return out


def mean_pr_curves(records: list[dict[str, Any]], keys: set[str] | None = None
                   ) -> dict[tuple[str, str], dict[str, dict[str, tuple[np.ndarray, np.ndarray, int]]]]:
    """{(sweep, dataset): {method: {direction: (recall, precision, seeds)}}}: elementwise means over
    seeds; curves on another cutoff grid than the method's first are left out of its mean."""
    out: dict = {}
    for group, methods in per_seed_pr(records, keys).items():
        for method, per_dir in methods.items():
            for direction, runs in per_dir.items():
                runs = [r for r in runs if len(r["recall"]) == len(runs[0]["recall"])]
                out.setdefault(group, {}).setdefault(method, {})[direction] = (
                    np.mean([r["recall"] for r in runs], axis=0), np.mean([r["precision"] for r in runs], axis=0),
                    len(runs))
    return out


def _two_panels(plt: Any) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    return fig, list(axes)


def draw_pr(source: FigureSource, out_dir: Path, formats: tuple[str, ...] = FORMATS) -> list[Figure]:
    """Per (sweep, dataset): PR curves of every method, mean over seeds with a ±1 std band."""
    plt = pyplot()
    figures = []
    for (sweep, dataset), methods in _per_seed_pr(source).items():
        fig, axes = _two_panels(plt)
        for ax, (direction, title) in zip(axes, PR_DIRECTIONS):
            curves = Curves(ax, source)
            for method, per_dir in methods.items():
                runs = per_dir.get(direction, [])
                runs = [r for r in runs if len(r["recall"]) == len(runs[0]["recall"])] if runs else []
                if runs:
                    recall = np.mean([r["recall"] for r in runs], axis=0)
                    curves.draw(recall, np.array([r["precision"] for r in runs]), method,
                                f"{source.names.method(method)} ({len(runs)})")
            ax.set_title(f"{source.names.dataset(dataset)}: {title}")
            ax.set_xlabel("recall")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("precision")
        fig.tight_layout()
        legend_outside(fig, axes)
        caption = (f"Precision-recall curves on {source.names.dataset(dataset)} (sweep {sweep}), image → text and "
                   "text → image: mean over seeds (seed count in the legend), band ±1 sample std of the precision.")
        figures += [Figure(p, caption, sweep, "pr") for p in save(fig, out_dir, f"pr_{safe(f'{sweep}__{dataset}')}",
                                                                    formats)]
        plt.close(fig)
    return figures


def pk_points(rec: dict[str, Any], direction: str) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(K, precision@K, where from) of one run: the stored PR curve's rank cutoffs when the record
    says how many items were retrieved, else the stored `p@K` scalars; None when it has neither."""
    metrics = rec.get("metrics", {})
    pr, n = metrics.get(f"pr_{direction}"), rec.get("n_retrieval")
    if pr and pr.get("precision") and isinstance(n, int) and n > 0:
        from bench.metrics import rank_cutoffs

        cutoffs = rank_cutoffs(n, len(pr["precision"]))
        if len(cutoffs) == len(pr["precision"]):
            return cutoffs.astype(float), np.asarray(pr["precision"], dtype=float), "pr"
    ks = {int(m.group(1)): v for k, v in metrics.items()
          if (m := re.match(rf"^p@(\d+)_{direction}$", k)) and isinstance(v, (int, float))}
    if not ks:
        return None
    order = sorted(ks)
    return np.array(order, dtype=float), np.array([ks[k] for k in order]), "p@K"


def _gather_pk(source: FigureSource) -> dict:
    gathered: dict = {}
    for group, method, rec in source.runs():
        for direction in ("i2t", "t2i"):
            found = pk_points(rec, direction)
            if found is not None:
                gathered.setdefault(group, {}).setdefault(method, {}).setdefault(direction, []).append(found)
    return gathered


def _pk_panel(ax: Any, source: FigureSource, methods: dict, direction: str) -> set[str]:
    curves, kinds = Curves(ax, source), set()
    for method, per_dir in methods.items():
        runs = per_dir.get(direction, [])
        runs = [r for r in runs if np.array_equal(r[0], runs[0][0])] if runs else []
        if runs:
            x = runs[0][0]
            curves.draw(x, np.array([r[1] for r in runs]), method, f"{source.names.method(method)} ({len(runs)})",
                        markers=len(x) <= FEW_POINTS)
            kinds.add(runs[0][2])
    return kinds


def draw_pk(source: FigureSource, out_dir: Path, formats: tuple[str, ...] = FORMATS) -> list[Figure]:
    """Per (sweep, dataset): precision@K against K (log axis), mean ± std over seeds."""
    plt = pyplot()
    figures = []
    for (sweep, dataset), methods in _gather_pk(source).items():
        fig, axes = _two_panels(plt)
        kinds: set[str] = set()
        for ax, (direction, title) in zip(axes, (("i2t", "image → text"), ("t2i", "text → image"))):
            kinds |= _pk_panel(ax, source, methods, direction)
            ax.set_xscale("log")
            ax.set_title(f"{source.names.dataset(dataset)}: {title}")
            ax.set_xlabel("K (retrieved items)")
            ax.grid(alpha=0.3, which="both")
        axes[0].set_ylabel("precision@K")
        fig.tight_layout()
        legend_outside(fig, axes)
        where = " and ".join(sorted({"pr": "the rank cutoffs of the stored PR curves",
                                     "p@K": "the stored p@K values"}[k] for k in kinds))
        caption = (f"Precision@K on {source.names.dataset(dataset)} (sweep {sweep}) against the number K of retrieved "
                   f"items (log axis), from {where}: mean over seeds, band ±1 sample std.")
        figures += [Figure(p, caption, sweep, "pk") for p in save(fig, out_dir, f"pk_{safe(f'{sweep}__{dataset}')}",
                                                                    formats)]
        plt.close(fig)
    return figures


def draw_all(source: FigureSource, out_dir: Path, formats: tuple[str, ...] = FORMATS) -> list[Figure]:
    """Every report figure of the source: PR, P@K, validation mAP and training loss per epoch,
    label adjacency."""
    figures: list[Figure] = []
    for make in (draw_pr, draw_pk, draw_epochs, draw_adjacency):
        figures += make(source, Path(out_dir), formats)
    return figures


def all_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
                formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Every report figure of the records under `results`, as file paths, in `formats` (PNG and
    PDF for `bench report --figures`; the copy on the MLflow parent run is PNG only)."""
    return [f.path for f in draw_all(figure_source(results, sweeps, keys), Path(out_dir), formats)]


def pr_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
               formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """The PR figures of the records under `results`, as file paths."""
    return [f.path for f in draw_pr(figure_source(results, sweeps, keys), Path(out_dir), formats)]


def pk_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
               formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """The precision@K figures of the records under `results`, as file paths."""
    return [f.path for f in draw_pk(figure_source(results, sweeps, keys), Path(out_dir), formats)]
