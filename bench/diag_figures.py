"""Figures of the diagnostics (matplotlib, Agg): per-label AP against label frequency, per-label
deltas of ablation variants, the t-SNE panel and the retrieval gallery.

Each function takes the results of `bench.diagnostics` and returns a matplotlib Figure (or None
when there is nothing to draw); `save_figure` writes it as PNG and PDF. Methods keep the order
they are given in (the full model first, then its variants, is what the report passes), and a
method keeps its colour across figures (`method_colours`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.diagnostics import GalleryHit, GalleryQuery, LabelAP, LabelDelta, TsneMaps, dominant_label

FORMATS = ("png", "pdf")
DIRECTIONS = (("i2t", "image → text"), ("t2i", "text → image"))
_MARKERS = "osD^vP*X"
_RELEVANT, _IRRELEVANT, _MISSING = "#1a9850", "#bdbdbd", "#f0f0f0"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def method_colours(methods: Sequence[str]) -> dict[str, Any]:
    """One tab10 colour per method, in the order given."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def save_figure(fig: Any, folder: Path | str, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write `fig` as folder/stem.<ext> for each format (PNG at 150 dpi), close it, return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.{ext}" for ext in formats]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    _plt().close(fig)
    return paths


# --- per-label AP ------------------------------------------------------------------------------


def label_ap_figure(results: Mapping[str, LabelAP], label_names: Sequence[str], *, title: str = "",
                    annotate: int = 6) -> Any:
    """Per-label AP against label frequency (log scale), one panel per direction, one colour and
    marker per method; a grey bar spans the methods' range on each label, and up to `annotate`
    labels on which the methods differ most (mean of the directions) are named, skipping any that
    would overlap a name already placed."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter, LogLocator

    colours = method_colours(list(results))
    freq = next(iter(results.values())).frequency
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True, layout="constrained")
    means = np.array([r.mean for r in results.values()])
    with np.errstate(invalid="ignore"):
        spread = np.nan_to_num(np.nanmax(means, 0) - np.nanmin(means, 0), nan=-1.0)
    for ax, (side, heading) in zip(axes, DIRECTIONS):
        values = np.array([getattr(r, side) for r in results.values()])
        ax.vlines(freq, np.nanmin(values, 0), np.nanmax(values, 0), color="0.8", linewidth=1.5, zorder=1)
        for k, (method, res) in enumerate(results.items()):
            ax.scatter(freq, getattr(res, side), s=22, color=colours[method], marker=_MARKERS[k % len(_MARKERS)],
                       label=method, zorder=2, edgecolors="white", linewidths=0.4)
        _name_labels(ax, freq, np.nanmax(values, 0), spread, label_names, annotate)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.0%}" if x >= 0.01 else f"{x:.1%}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
        ax.set_xlabel("label frequency (share of items carrying it)")
        ax.set_title(heading)
        ax.grid(alpha=0.3, which="major", linewidth=0.5)
    axes[0].set_ylabel("AP of the queries carrying the label")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=min(len(results), 6),
               fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def _name_labels(ax: Any, x: np.ndarray, y: np.ndarray, spread: np.ndarray, names: Sequence[str],
                 at_most: int) -> None:
    """Name the labels of largest spread above their points, skipping a name that would sit within
    ~0.1 decade and 0.03 AP of one already placed (log x axis)."""
    placed: list[tuple[float, float]] = []
    for i in np.argsort(-spread, kind="stable"):
        if len(placed) == at_most or spread[i] <= 0:
            break
        if not np.isfinite(y[i]) or x[i] <= 0:
            continue
        here = (float(np.log10(x[i])), float(y[i]))
        if any(abs(here[0] - px) < 0.1 and abs(here[1] - py) < 0.03 for px, py in placed):
            continue
        placed.append(here)
        ax.annotate(names[i], (x[i], y[i]), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7,
                    color="0.25")


def label_delta_figure(deltas: Mapping[str, LabelDelta], frequency: np.ndarray, label_names: Sequence[str], *,
                       full: str = "full model", title: str = "") -> Any:
    """Per-label AP difference of each variant to `full` (mean over seeds, bars = ±1 std), labels
    from the most frequent (top) to the rarest; right of zero = the variant does better."""
    plt = _plt()
    order = [i for i in np.argsort(-frequency, kind="stable") if any(np.isfinite(d.mean[i]) for d in deltas.values())]
    colours = method_colours([full, *deltas])
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.2 * len(order)))
    rows = np.arange(len(order))
    width = 0.8 / max(len(deltas), 1)
    for k, (variant, delta) in enumerate(deltas.items()):
        y = rows - 0.4 + width * (k + 0.5)
        ax.barh(y, delta.mean[order], height=width, color=colours[variant], label=f"{variant} − {full}",
                xerr=np.nan_to_num(delta.std[order]), error_kw=dict(elinewidth=0.6, capsize=1.5, ecolor="0.3"))
    ax.axvline(0, color="0.2", linewidth=0.8)
    ends = [d.mean[order] + sign * np.nan_to_num(d.std[order]) for d in deltas.values() for sign in (-1, 1)]
    low, high = min(0.0, np.nanmin(ends)), max(0.0, np.nanmax(ends))
    ax.set_xlim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))  # zero visible, with a margin
    ax.set_yticks(rows, [f"{label_names[i]} ({frequency[i]:.1%})" for i in order], fontsize=7)
    ax.set_ylim(len(order) - 0.5, -0.5)  # most frequent on top, no empty band at either end
    ax.set_xlabel("Δ AP per label (mean of the two directions)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    if title:
        ax.set_title(title, pad=12 + 12 * ((len(deltas) + 1) // 2))
    fig.tight_layout()
    return fig


# --- t-SNE ---------------------------------------------------------------------------------------


def tsne_figure(maps: TsneMaps, labels: np.ndarray, label_names: Sequence[str], *, top: int = 9,
                title: str = "") -> Any:
    """The t-SNE maps side by side: colour = the item's dominant label (`dominant_label` over all
    of `labels`, the saved sample's), the `top` most common dominant labels in colour and the rest
    grey; marker = modality (circle image, triangle text). Axes carry no units, so no ticks."""
    plt = _plt()
    from matplotlib.lines import Line2D

    dominant = dominant_label(labels)[maps.positions]
    kinds, counts = np.unique(dominant[dominant >= 0], return_counts=True)
    shown = kinds[np.argsort(-counts, kind="stable")][:top]
    palette = plt.get_cmap("tab10").colors
    colour = np.array([palette[list(shown).index(d)] if d in shown else (0.78, 0.78, 0.78) for d in dominant])
    grey_last = np.argsort(np.isin(dominant, shown), kind="stable")  # grey points underneath
    fig, axes = plt.subplots(1, len(maps.coords), figsize=(3.6 * len(maps.coords), 3.9), squeeze=False)
    for ax, (model, (image_xy, text_xy)) in zip(axes[0], maps.coords.items()):
        for xy, marker in ((image_xy, "o"), (text_xy, "^")):
            ax.scatter(xy[grey_last, 0], xy[grey_last, 1], c=colour[grey_last], marker=marker, s=9,
                       linewidths=0.25, edgecolors="white", alpha=0.85)
        ax.set_title(model, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], marker="s", linestyle="", color=palette[i], label=label_names[d])
               for i, d in enumerate(shown)]
    handles.append(Line2D([], [], marker="s", linestyle="", color=(0.78, 0.78, 0.78), label="other"))
    handles += [Line2D([], [], marker=m, linestyle="", color="0.3", markerfacecolor="none", label=name)
                for m, name in (("o", "image"), ("^", "text"))]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * (len(handles) // 6), 1, 1))
    return fig


# --- the retrieval gallery -------------------------------------------------------------------------


# A PNG is decoded whole (Pillow cannot decode part of one): 4 bytes a pixel as RGBA. openclipart
# holds 15 PNGs of 25 to 169 megapixels among 8,118 (median 53 kilopixels); one of them in a gallery
# cost the report 0.7 GB at its peak, for a 160-pixel thumbnail. Larger images show "no preview".
MAX_PREVIEW_PIXELS = 25_000_000


def _thumbnail(path: str | None, size: int = 160) -> np.ndarray | None:
    """The image at `path` fitted into a white `size` x `size` RGB square; None if unreadable or
    larger than MAX_PREVIEW_PIXELS.

    Reduced in the file's own mode before anything is converted (converting first made a second
    full-size copy)."""
    if not path:
        return None
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PREVIEW_PIXELS:
                    return None
                img.draft("RGB", (size, size))  # JPEG: decoded at a fraction of its size; no-op for PNG
                if img.mode not in ("RGBA", "RGB", "LA", "L"):
                    img = img.convert("RGBA")  # palette and 1-bit images: resampled in colour, not by index
                img.thumbnail((size, size), reducing_gap=2.0)
                img = img.convert("RGBA")
                # centred on a white square: transparent clip art shows on white, every cell the same size
                canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
                canvas.alpha_composite(img, ((size - img.width) // 2, (size - img.height) // 2))
                return np.asarray(canvas.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _cell(ax: Any, preview: Mapping[str, str] | None, kind: str, frame: str | None, width: int) -> None:
    """Draw one preview (kind "image" or "text", wrapped at `width` characters, 4 lines at most)
    in ax, framed in `frame` (None: no frame)."""
    ax.set_xticks([])
    ax.set_yticks([])
    picture = _thumbnail((preview or {}).get("image")) if kind == "image" else None
    text = (preview or {}).get("text") if kind == "text" else None
    if picture is not None:
        ax.imshow(picture)
    elif text:
        shown = textwrap.fill(textwrap.shorten(text, 4 * width, placeholder="…"), width)
        ax.text(0.5, 0.5, shown, ha="center", va="center", fontsize=6.5, transform=ax.transAxes)
    else:
        ax.set_facecolor(_MISSING)
        ax.text(0.5, 0.5, "no preview", ha="center", va="center", fontsize=6, color="0.5", transform=ax.transAxes)
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_color(frame)
            spine.set_linewidth(2.5 if frame == _RELEVANT else 0.8)


def gallery_figure(gallery: Sequence[GalleryQuery], direction: str, label_names: Sequence[str], *,
                   title: str = "") -> Any:
    """The gallery of one direction ("t2i": text queries, images retrieved; "i2t" the reverse):
    per query a block of rows, one per method, with the query on the left (its labels below) and
    its top k in rank order; results sharing a label with the query are framed green, the others
    thin grey, the query's own pair tagged "pair". Returns None when no result of that direction
    has the preview it needs (a dataset without a `preview` hook)."""
    plt = _plt()
    queries = [q for q in gallery if q.direction == direction]
    query_kind, hit_kind = ("text", "image") if direction == "t2i" else ("image", "text")
    if not any((h.preview or {}).get(hit_kind) for q in queries for hs in q.hits.values() for h in hs):
        return None
    methods = list(queries[0].hits)
    k = max(len(hs) for hs in queries[0].hits.values())
    block_h, cell_w = 1.05 * len(methods), 1.05 if hit_kind == "image" else 1.3
    # the method names' column: about 0.065 inch a character at 7.5 pt, so no name runs into the query
    names_w = max(0.75, 0.065 * max(len(m) for m in methods) + 0.1) / cell_w
    fig = plt.figure(figsize=(1.6 + cell_w * (k + 1.5 + names_w), 0.5 + (block_h + 0.45) * len(queries)))
    outer = fig.add_gridspec(len(queries), 1, hspace=0.45 / block_h, top=1 - 0.45 / fig.get_figheight(),
                             bottom=0.02, left=0.01, right=0.99)
    for block, query in enumerate(queries):
        inner = outer[block].subgridspec(len(methods), k + 2, width_ratios=[1.5, names_w] + [1] * k,
                                         hspace=0.1, wspace=0.06)
        ax = fig.add_subplot(inner[:, 0])
        _cell(ax, query.preview, query_kind, "0.2", 20)
        ax.set_title("query", fontsize=7, color="0.3", pad=2)
        ax.set_xlabel(textwrap.fill(", ".join(label_names[i] for i in query.labels), 28), fontsize=6.5,
                      color="0.3", labelpad=2)
        for row, method in enumerate(methods):
            label_ax = fig.add_subplot(inner[row, 1])
            label_ax.axis("off")
            label_ax.text(0.95, 0.5, method, ha="right", va="center", fontsize=7.5, transform=label_ax.transAxes)
            for col, hit in enumerate(query.hits[method]):
                hit_ax = fig.add_subplot(inner[row, col + 2])
                _cell(hit_ax, hit.preview, hit_kind, _RELEVANT if hit.relevant else _IRRELEVANT, 16)
                _mark(hit_ax, hit)
    heading = "text query → top images" if direction == "t2i" else "image query → top texts"
    heading += f", top {k} by rank; green frame = shares a label with the query"
    fig.suptitle(f"{title}: {heading}" if title else heading, fontsize=9, y=1 - 0.1 / fig.get_figheight())
    return fig


def _mark(ax: Any, hit: GalleryHit) -> None:
    """Tag the query's own pair, so a reader sees where the exact match ranked."""
    if hit.paired:
        ax.text(0.03, 0.97, "pair", transform=ax.transAxes, ha="left", va="top", fontsize=6, color="white",
                bbox=dict(boxstyle="round,pad=0.15", facecolor=_RELEVANT, linewidth=0))
