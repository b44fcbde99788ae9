"""Report figures from what runs logged while training (PNG and PDF), per (sweep, dataset):

- validation mAP per epoch (left) with a marker at the epoch each seed selected (marker size:
  how many seeds chose it), and the training loss per epoch (right), mean ± std over seeds; a
  run whose selected epoch is its last had not stopped improving on the validation split;
- heatmaps of a matrix artifact (`ctx.artifact("label_adjacency", ...)` in a fit), one per
  distinct matrix: methods that logged the same one share a figure.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.report_plot import FORMATS, Curves, Figure, FigureSource, figure_source, legend_outside, pyplot, safe, save


def _history(rec: dict[str, Any], key: str) -> dict[int, float]:
    return {int(row["step"]): float(row[key]) for row in rec.get("history") or []
            if isinstance(row, dict) and isinstance(row.get(key), (int, float)) and "step" in row}


def _gather(source: FigureSource) -> dict:
    gathered: dict = {}
    for group, method, rec in source.runs():
        val = _history(rec, "val_map")
        if len(val) > 1:
            runs = gathered.setdefault(group, {}).setdefault(method, [])
            runs.append((val, _history(rec, "loss"), rec.get("best_epoch")))
    return gathered


def _common(curves: list[dict[int, float]]) -> list[int]:
    return sorted(set.intersection(*(set(c) for c in curves))) if curves else []


def _selected(ax: Any, runs: list, steps: list[int], mean: np.ndarray, color: str) -> None:
    """A hollow marker on the mean validation curve at each epoch some seed selected."""
    for epoch, count in Counter(b for _, _, b in runs if b in steps).items():
        ax.plot([epoch], [mean[steps.index(epoch)]], linestyle="none", marker="o", markerfacecolor="none",
                markeredgecolor=color, markersize=5 + 2 * count, markeredgewidth=1.2, zorder=4)


def _panels(source: FigureSource, methods: dict, ax_val: Any, ax_loss: Any) -> bool:
    """Draw every method's validation and loss curves; True when some run has a loss history."""
    val_curves, loss_curves, any_loss = Curves(ax_val, source), Curves(ax_loss, source), False
    for method, runs in methods.items():
        label = f"{source.names.method(method)} ({len(runs)})"
        steps = _common([v for v, _, _ in runs])
        if len(steps) > 1:
            ys = np.array([[v[e] for e in steps] for v, _, _ in runs])
            val_curves.draw(np.array(steps), ys, method, label)
            _selected(ax_val, runs, steps, ys.mean(axis=0), source.style(method).color)
        losses = [loss for _, loss, _ in runs if loss]
        loss_steps = _common(losses) if len(losses) == len(runs) else []
        if len(loss_steps) > 1:
            loss_curves.draw(np.array(loss_steps), np.array([[c[e] for e in loss_steps] for c in losses]), method,
                             label)
            any_loss = True
    return any_loss


def draw_epochs(source: FigureSource, out_dir: Path, formats: tuple[str, ...] = FORMATS) -> list[Figure]:
    """Per (sweep, dataset): validation mAP with the selected epochs, and the training loss, per epoch."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    figures = []
    for (sweep, dataset), methods in _gather(source).items():
        fig, (ax_val, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
        any_loss = _panels(source, methods, ax_val, ax_loss)
        shown = source.names.dataset(dataset)
        ax_val.set_title(f"{shown}: validation mAP per epoch")
        ax_val.set_ylabel("validation mAP (avg of I→T, T→I)")
        ax_loss.set_title(f"{shown}: training loss per epoch" if any_loss else "no training loss recorded")
        ax_loss.set_ylabel("training loss (mean over the epoch's batches)")
        for ax in (ax_val, ax_loss):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
            ax.grid(alpha=0.3)
        fig.tight_layout()
        marker = Line2D([], [], linestyle="none", marker="o", markerfacecolor="none", markeredgecolor="black")
        legend_outside(fig, [ax_val, ax_loss], [(marker, "selected epoch (larger: more seeds)")])
        caption = (f"Validation mAP (left; hollow markers: the epoch each seed selected, larger where more seeds "
                   f"chose it) and training loss (right) per epoch on {shown} (sweep {sweep}): mean over seeds "
                   "(seed count in the legend), band ±1 sample std.")
        figures += [Figure(p, caption, sweep, "val")
                    for p in save(fig, out_dir, f"val_{safe(f'{sweep}__{dataset}')}", formats)]
        plt.close(fig)
    return figures


def _distinct_matrices(source: FigureSource, artifact: str) -> dict[tuple[str, str], list]:
    """Per (sweep, dataset): [(matrix, axis labels, seed, [methods])], one entry per distinct matrix
    from the first-seed record of every method that logged one."""
    seen: set = set()
    groups: dict[tuple[str, str], list] = {}
    for (sweep, dataset), method, rec in sorted(source.runs(), key=lambda t: (t[2]["spec"]["seed"], t[1])):
        art = (rec.get("artifacts") or {}).get(artifact)
        if not art or (sweep, dataset, method) in seen:
            continue
        seen.add((sweep, dataset, method))
        matrix = np.asarray(art["data"], dtype=float)
        if matrix.ndim != 2:
            continue
        names = list(art.get("axis_labels") or [])
        for other, other_names, _seed, methods in groups.setdefault((sweep, dataset), []):
            if other_names == names and np.array_equal(other, matrix, equal_nan=True):
                methods.append(method)
                break
        else:
            groups[(sweep, dataset)].append((matrix, names, rec["spec"]["seed"], [method]))
    return groups


def _heatmap(plt: Any, matrix: np.ndarray, names: list[str], title: str) -> Any:
    size = min(9.0, 3 + 0.18 * matrix.shape[0])
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.ax.tick_params(labelsize=6)
    if names and len(names) == matrix.shape[0] and matrix.shape[0] <= 60:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
    else:
        ax.tick_params(labelsize=6)
        title += f" ({matrix.shape[0]} labels, names omitted)"
    ax.set_title("\n".join(textwrap.wrap(title, width=int(9 * size))), fontsize=8)
    fig.tight_layout()
    return fig


def draw_adjacency(source: FigureSource, out_dir: Path, formats: tuple[str, ...] = FORMATS,
                   artifact: str = "label_adjacency") -> list[Figure]:
    """Per (sweep, dataset): a heatmap of each distinct `artifact` matrix, labelled with its axis
    labels (6 pt) and titled with every method that logged it (wrapped)."""
    plt = pyplot()
    figures = []
    for (sweep, dataset), distinct in sorted(_distinct_matrices(source, artifact).items()):
        for matrix, names, seed, methods in distinct:
            shown = ", ".join(source.names.method(m) for m in methods)
            what = artifact.replace("_", " ")
            fig = _heatmap(plt, matrix, names, f"{source.names.dataset(dataset)} | {shown}: {what} (seed {seed})")
            caption = (f"The {what} matrix logged by {shown} on {source.names.dataset(dataset)} (sweep {sweep}), "
                       f"seed {seed}{'; the same matrix for each of them' if len(methods) > 1 else ''}.")
            stem = f"adj_{safe(f'{sweep}__{dataset}__{methods[0]}')}"
            figures += [Figure(p, caption, sweep, "adj") for p in save(fig, out_dir, stem, formats)]
            plt.close(fig)
    return figures


def epoch_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
                  formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """The validation / training-loss figures of the records under `results`, as file paths."""
    return [f.path for f in draw_epochs(figure_source(results, sweeps, keys), Path(out_dir), formats)]


def adjacency_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
                      artifact: str = "label_adjacency", formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """The heatmaps of the `artifact` matrices of the records under `results`, as file paths."""
    source = figure_source(results, sweeps, keys)
    return [f.path for f in draw_adjacency(source, Path(out_dir), formats, artifact)]
