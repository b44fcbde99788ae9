"""The diagnostics' figures for `bench report --diag --figures` (and the html page), per (sweep,
dataset): per-label AP against label frequency, each variant's per-label difference to its full
model, a t-SNE panel of the full model and its variants side by side (the same seed and the same
sampled items for all), and, for datasets whose plugin can show an item (`Dataset.preview`), a
retrieval gallery in both directions. Everything is read from the records and the embeddings
files they reference; nothing is re-trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.diag_figures import gallery_figure, label_ap_figure, label_delta_figure, tsne_figure
from bench.diagnostics import mean_label_ap, retrieval_gallery, tsne_maps
from bench.embeddings import EmbeddingsError, load_embeddings
from bench.report_diag import label_deltas, per_label
from bench.report_plot import FORMATS, Figure, FigureSource, pyplot, safe, save


def _write(fig: Any, out_dir: Path, stem: str, formats: tuple[str, ...], caption: str, sweep: str,
           kind: str) -> list[Figure]:
    paths = save(fig, out_dir, stem, formats)
    pyplot().close(fig)
    return [Figure(p, caption, sweep, kind) for p in paths]


def _families(rows: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """(full model label, [its variants' labels]) for each family with variants in `rows`."""
    firsts = rows.drop_duplicates("method")
    out = []
    for fam, g in firsts.groupby("family", sort=False):
        full = g[g["method_name"] == fam]["method"]
        variants = [m for m, n in zip(g["method"], g["method_name"]) if str(n).startswith(f"{fam}/")]
        if len(full) == 1 and variants:
            out.append((full.iloc[0], variants))
    return out


def _embeddings(source: FigureSource, rows: pd.DataFrame, methods: list[str], results: Path
                ) -> tuple[int, dict[str, Any]] | None:
    """(seed, {method: saved embeddings}) of the lowest seed every method kept, all on one sample."""
    seeds = sorted(set.intersection(*(set(rows[rows["method"] == m]["seed"]) for m in methods)))
    for seed in seeds:
        found = {}
        for m in methods:
            key = rows[(rows["method"] == m) & (rows["seed"] == seed)]["key"].iloc[0]
            file = (source.records.get(key, {}).get("embeddings") or {}).get("file")
            try:
                found[m] = load_embeddings(results / file) if file else None
            except EmbeddingsError:
                found[m] = None
        kept = {m: e for m, e in found.items() if e is not None}
        if len(kept) == len(methods) and len({tuple(e.indices) for e in kept.values()}) == 1:
            return seed, kept
    return None


def _preview(source: FigureSource, rows: pd.DataFrame, results: Path) -> Any:
    """The dataset plugin's `preview`, when it shows anything, else None."""
    from bench.registry import get_dataset
    from bench.sweep_entries import get_dataset_params

    spec = source.records.get(rows["key"].iloc[0], {}).get("spec", {})
    try:
        cls = get_dataset(spec["dataset"])
        plugin = cls(get_dataset_params(cls, spec.get("dataset_params") or {}), cache_dir=results / "cache" /
                     spec["dataset"])
        return plugin.preview if plugin.preview(0) is not None else None
    except Exception:  # noqa: BLE001 - a gallery is a nicety: no preview, no gallery
        return None


def _labels_figures(source, sweep, dataset, label_names, runs, rows, out_dir, formats) -> list[Figure]:
    names, stem = source.names, safe(f"{sweep}__{dataset}")
    means = {names.method(m): mean_label_ap(list(r.values())) for m, r in runs.items()}
    fig = label_ap_figure(means, label_names, title=f"{names.dataset(dataset)}: AP per label")
    out = _write(fig, out_dir, f"labels_{stem}", formats, f"{names.dataset(dataset)}: AP of each label's queries "
                 "against the label's frequency in the saved test sample, per configuration (mean over seeds)",
                 sweep, "labels")
    deltas = label_deltas(runs, rows)
    frequency = next(iter(next(iter(runs.values())).values())).frequency
    for full, variants in _families(rows):
        mine = {names.method(v): deltas[v] for v in variants if v in deltas}
        if mine:
            fig = label_delta_figure(mine, frequency, label_names, full=names.method(full),
                                     title=f"{names.dataset(dataset)}: variants − {names.method(full)} per label")
            out += _write(fig, out_dir, f"label_delta_{stem}__{safe(full)}", formats,
                          f"{names.dataset(dataset)}: per-label AP of each variant minus {names.method(full)} "
                          "(seed-paired mean ± std; right of zero: the variant does better)", sweep, "labels")
    return out


def _space_figures(source, sweep, dataset, rows, results, out_dir, formats, label_names) -> list[Figure]:
    names, stem, out = source.names, safe(f"{sweep}__{dataset}"), []
    preview = _preview(source, rows, results)
    for full, variants in _families(rows):
        found = _embeddings(source, rows, [full, *variants], results)
        if found is None:
            continue
        seed, saved = found
        models = {names.method(m): (e.image, e.text) for m, e in saved.items()}
        labels = next(iter(saved.values())).labels
        fig = tsne_figure(tsne_maps(models, seed=seed), labels, label_names,
                          title=f"{names.dataset(dataset)}: common space of {names.method(full)} and its variants "
                                f"(t-SNE, seed {seed})")
        out += _write(fig, out_dir, f"tsne_{stem}__{safe(full)}", formats,
                      f"{names.dataset(dataset)}: t-SNE of the common space, {names.method(full)} and each variant "
                      f"on the same sampled test items (seed {seed}); colour = most frequent label, marker = "
                      "modality", sweep, "tsne")
        if preview is not None:
            rows_meta = np.asarray(next(iter(saved.values())).meta.get("rows", []), dtype=np.int64)
            gallery = retrieval_gallery(models, labels, seed=seed, items=rows_meta if len(rows_meta) else None,
                                        preview=preview)
            for direction, what in (("t2i", "text queries, top 5 images"), ("i2t", "image queries, top 5 texts")):
                fig = gallery_figure(gallery, direction, label_names,
                                     title=f"{names.dataset(dataset)}: {names.method(full)} and its variants")
                if fig is not None:
                    out += _write(fig, out_dir, f"gallery_{direction}_{stem}__{safe(full)}", formats,
                                  f"{names.dataset(dataset)}: retrieval gallery, {what} per method among the saved "
                                  "test sample; relevant results (sharing a label) framed green", sweep, "gallery")
    return out


def draw_diag(source: FigureSource, out_dir: Path, results: Path, formats: tuple[str, ...] = FORMATS
              ) -> list[Figure]:
    """Every diagnostics figure of the source's runs that kept embeddings."""
    figures: list[Figure] = []
    for sweep in dict.fromkeys(source.df["sweep"]) if not source.df.empty else []:
        for dataset, label_names, runs, rows in per_label(source.df, source.records, sweep):
            figures += _labels_figures(source, sweep, dataset, label_names, runs, rows, Path(out_dir), formats)
            figures += _space_figures(source, sweep, dataset, rows, Path(results), Path(out_dir), formats,
                                      label_names)
    return figures
