"""What every report figure shares: the runs it draws (the ones the tables use, with their row
labels), one style per method (`bench.report_style`), curves with a std band that keep identical
curves visible, a legend outside the axes (it never covers a curve) and the files written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.records import iter_records
from bench.report_frame import records_frame
from bench.report_names import Names
from bench.report_style import Style, assign_styles

FORMATS = ("png", "pdf")


@dataclass(frozen=True)
class Figure:
    """A written figure: its file, what it shows (the html caption), its sweep and kind."""

    path: Path
    caption: str
    sweep: str
    kind: str


@dataclass
class FigureSource:
    """The runs the tables use (frame rows and their records) and how each method is drawn."""

    df: pd.DataFrame
    records: dict[str, dict[str, Any]]
    styles: dict[str, Style] = field(default_factory=dict)
    names: Names = field(default_factory=Names)

    def __post_init__(self) -> None:
        if not self.styles and not self.df.empty:
            self.styles = assign_styles(self.df)

    def runs(self) -> Iterator[tuple[tuple[str, str], str, dict[str, Any]]]:
        """((sweep, dataset), method label, record) of every run, in table order."""
        for row in self.df.itertuples():
            yield (row.sweep, row.dataset), row.method, self.records[row.key]

    def style(self, method: str) -> Style:
        """The method's style (a neutral one for a method the frame does not hold)."""
        return self.styles.get(method, Style("#555555", "-", 1.3))


def figure_source(results: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
                  names: Names | None = None) -> FigureSource:
    """The figure source of the records under `results` (of `sweeps` and `keys` when given)."""
    records = iter_records(results, sweeps)
    return FigureSource(records_frame(records, keys), {r["key"]: r for r in records}, names=names or Names())


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def safe(text: str) -> str:
    """Text usable in a file name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def save(fig: Any, out_dir: Path, stem: str, formats: tuple[str, ...]) -> list[Path]:
    """Write the figure in each format; the bounding box grows to hold a legend outside the axes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in formats:
        path = out_dir / f"{stem}.{ext}"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        written.append(path)
    return written


def legend_outside(fig: Any, axes: list[Any], extra: list[tuple[Any, str]] = ()) -> None:
    """One legend for the figure, right of the axes (entries of every axes, each label once)."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    for handle, label in extra:
        entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="upper left", bbox_to_anchor=(1.0, 0.97),
                   fontsize=7, frameon=False, handlelength=3.2)


class Curves:
    """Draws mean curves (and a ±1 sample-std band) on one axes; a curve identical to one drawn
    before it is dashed on top and its label says `= other`."""

    def __init__(self, ax: Any, source: FigureSource) -> None:
        self.ax, self.source = ax, source
        self.drawn: list[tuple[np.ndarray, np.ndarray, str]] = []

    def draw(self, x: np.ndarray, ys: np.ndarray, method: str, label: str, markers: bool = False) -> Any:
        """Plot the mean of the rows of `ys` against `x`; returns the line."""
        mean = ys.mean(axis=0)
        style = self.source.style(method)
        kwargs = style.kwargs()
        same = next((other for ox, om, other in self.drawn if np.array_equal(ox, x) and np.array_equal(om, mean)),
                    None)
        if same is not None:
            label += f" (= {same})"
            kwargs.update(linestyle=(0, (3, 3)) if style.dash == "-" else style.dash, zorder=3)
        if markers:
            kwargs.update(marker="o", markersize=3)
        (line,) = self.ax.plot(x, mean, label=label, **kwargs)
        if len(ys) > 1:
            std = ys.std(axis=0, ddof=1)
            self.ax.fill_between(x, mean - std, mean + std, color=style.color, alpha=0.13, linewidth=0)
        self.drawn.append((x, mean, self.source.names.method(method)))
        return line
