"""Report figures from records (PNG and PDF): PR curves and precision@K with a std band over seeds,
validation mAP per epoch, and the label adjacency of the label-graph models (a logged artifact).

Every figure is per (sweep, dataset); methods are overlaid. The records used are the ones the
tables use (`bench.report.records_frame`): newest per seed, configurations never mixed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.records import iter_records

PR_DIRECTIONS = (("pr_i2t", "image → text"), ("pr_t2i", "text → image"))


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _chosen(records: list[dict[str, Any]], keys: set[str] | None) -> list[tuple[tuple[str, str], str, dict]]:
    """((sweep, dataset), method label as the tables show it, record) for each record the tables use."""
    from bench.report import records_frame

    df = records_frame(records, keys)
    by_key = {r["key"]: r for r in records}
    return [((row.sweep, row.dataset), row.method, by_key[row.key]) for row in df.itertuples()]


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def per_seed_pr(records: list[dict[str, Any]], keys: set[str] | None = None
                ) -> dict[tuple[str, str], dict[str, dict[str, list[dict[str, list[float]]]]]]:
    """{(sweep, dataset): {method: {"pr_i2t"/"pr_t2i": [curve per seed]}}}, in table order."""
    out: dict = {}
    for group, method, rec in _chosen(records, keys):
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


def _band(ax: Any, x: np.ndarray, ys: np.ndarray, label: str) -> None:
    """Mean line and a ±1 sample-std band (no band for one seed)."""
    mean = ys.mean(axis=0)
    (line,) = ax.plot(x, mean, label=label, linewidth=1.2)
    if len(ys) > 1:
        std = ys.std(axis=0, ddof=1)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.18, linewidth=0)


FORMATS = ("png", "pdf")


def _save(fig: Any, out_dir: Path, stem: str, written: list[Path], formats: tuple[str, ...]) -> None:
    for ext in formats:
        path = out_dir / f"{stem}.{ext}"
        fig.savefig(path, dpi=120)
        written.append(path)


def pr_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
               formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Per (sweep, dataset): PR curves of every method, mean over seeds with a ±1 std band of the
    precision (recall is averaged too); PNG and PDF."""
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for (sweep, dataset), methods in per_seed_pr(iter_records(results, sweeps), keys).items():
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for ax, (direction, title) in zip(axes, PR_DIRECTIONS):
            for method, per_dir in methods.items():
                runs = per_dir.get(direction, [])
                runs = [r for r in runs if runs and len(r["recall"]) == len(runs[0]["recall"])]
                if runs:
                    recall = np.mean([r["recall"] for r in runs], axis=0)
                    _band(ax, recall, np.array([r["precision"] for r in runs]), f"{method} ({len(runs)})")
            ax.set_title(f"{dataset}: {title}")
            ax.set_xlabel("recall")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("precision")
        axes[1].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        _save(fig, out_dir, f"pr_{_safe(f'{sweep}__{dataset}')}", written, formats)
        plt.close(fig)
    return written


def pk_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
               formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Per (sweep, dataset): precision@K against K (log axis) for every method, mean ± std over seeds."""
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gathered: dict = {}
    for group, method, rec in _chosen(iter_records(results, sweeps), keys):
        for direction in ("i2t", "t2i"):
            ks = {int(m.group(1)): v for k, v in rec.get("metrics", {}).items()
                  if (m := re.match(rf"^p@(\d+)_{direction}$", k)) and isinstance(v, (int, float))}
            if ks:
                gathered.setdefault(group, {}).setdefault(method, {}).setdefault(direction, []).append(ks)
    written: list[Path] = []
    for (sweep, dataset), methods in gathered.items():
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for ax, direction, title in ((axes[0], "i2t", "image → text"), (axes[1], "t2i", "text → image")):
            for method, per_dir in methods.items():
                runs = per_dir.get(direction, [])
                common = sorted(set.intersection(*(set(r) for r in runs))) if runs else []
                if common:
                    _band(ax, np.array(common), np.array([[r[k] for k in common] for r in runs]),
                          f"{method} ({len(runs)})")
            ax.set_xscale("log")
            ax.set_title(f"{dataset}: {title}")
            ax.set_xlabel("K (retrieved items)")
            ax.grid(alpha=0.3, which="both")
        axes[0].set_ylabel("precision@K")
        axes[1].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        _save(fig, out_dir, f"pk_{_safe(f'{sweep}__{dataset}')}", written, formats)
        plt.close(fig)
    return written


def epoch_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
                  formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Per (sweep, dataset): validation mAP per epoch of every iterative method, mean ± std over seeds."""
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gathered: dict = {}
    for group, method, rec in _chosen(iter_records(results, sweeps), keys):
        curve = {int(row["step"]): row["val_map"] for row in rec.get("history", []) if "val_map" in row}
        if len(curve) > 1:
            gathered.setdefault(group, {}).setdefault(method, []).append(curve)
    written: list[Path] = []
    for (sweep, dataset), methods in gathered.items():
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for method, runs in methods.items():
            common = sorted(set.intersection(*(set(r) for r in runs)))
            if common:
                _band(ax, np.array(common), np.array([[r[e] for e in common] for r in runs]),
                      f"{method} ({len(runs)})")
        ax.set_title(f"{dataset}: validation mAP per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation mAP (avg of I→T, T→I)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        _save(fig, out_dir, f"val_{_safe(f'{sweep}__{dataset}')}", written, formats)
        plt.close(fig)
    return written


def adjacency_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
                      artifact: str = "label_adjacency", formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Per (sweep, dataset): a heatmap of each distinct `artifact` matrix (`ctx.artifact` in a fit)
    from the first-seed record of every method that logged one, labelled with its axis labels.

    Methods that logged the same matrix (every variant of one graph builds the same label graph
    from the same training labels) share one figure, named after the first of them and titled
    with all of them: the heatmaps are the slow part of a report, and identical ones say nothing new.
    """
    import textwrap

    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: set = set()
    groups: dict[tuple[str, str], list[tuple[np.ndarray, list[str], int, list[str]]]] = {}
    for (sweep, dataset), method, rec in sorted(_chosen(iter_records(results, sweeps), keys),
                                                key=lambda t: (t[2]["spec"]["seed"], t[1])):
        art = rec.get("artifacts", {}).get(artifact)
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
    written: list[Path] = []
    for (sweep, dataset), distinct in sorted(groups.items()):
        for matrix, names, seed, methods in distinct:
            size = min(9.0, 3 + 0.18 * matrix.shape[0])
            fig, ax = plt.subplots(figsize=(size + 1.2, size))
            im = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            if names and len(names) == matrix.shape[0] and matrix.shape[0] <= 60:
                ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
                ax.set_yticks(range(len(names)), names, fontsize=6)
            title = f"{dataset} | {', '.join(methods)}: {artifact.replace('_', ' ')} (seed {seed})"
            ax.set_title("\n".join(textwrap.wrap(title, width=int(12 * size))), fontsize=9)
            fig.tight_layout()
            _save(fig, out_dir, f"adj_{_safe(f'{sweep}__{dataset}__{methods[0]}')}", written, formats)
            plt.close(fig)
    return written


def all_figures(results: Path, out_dir: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
                formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Every report figure: PR, P@K, validation mAP per epoch, label adjacency; each in `formats`
    (PNG and PDF for `bench report --figures`; the copy on the MLflow parent run is PNG only)."""
    written: list[Path] = []
    for make in (pr_figures, pk_figures, epoch_figures, adjacency_figures):
        written += make(results, out_dir, sweeps, keys, formats=formats)
    return written
