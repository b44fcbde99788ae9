"""A report table before rendering: `Table` (header, rows of `Cell`s, row blocks, notes, caption,
label) and how one cell prints in markdown, plain text, LaTeX and html.

Marks, each with one meaning in every table of a report: bold / underline the best / second
mean of a column (only where a column has two or more values), `*` a Holm-adjusted p below
alpha, `§` an ablation difference that could not be tested, `(n=1)` one seed (LaTeX: `†`),
`(deterministic)` the same value on every seed (LaTeX: `‡`), `identical` a variant whose results
equal its full model's on every seed.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LATEX_MARKS = {"*": "$^{*}$", "§": r"\textsuperscript{\S}"}


@dataclass
class Cell:
    """One table entry: mean, spread, rank in its column (1 best, 2 second), mark, kind.

    kind: `stat` (mean ± std over seeds), `delta` (a signed difference), `value` (a number without
    spread, e.g. a published one), `plain` (text)."""

    mean: float
    std: float = float("nan")
    n: int = 0
    same: bool = False
    rank: int = 0
    mark: str = ""
    kind: str = "stat"
    text: str = ""
    digits: int | None = None  # overrides the table's digits (e.g. seconds)

    def spread(self, show_std: bool) -> str:
        """'± s', 'n=1', 'deterministic' or '' (deltas, values, std not shown)."""
        if self.kind != "stat" or not show_std:
            return ""
        if self.n <= 1:
            return "n=1"
        return "deterministic" if self.same else "±"

    def render(self, fmt: str, digits: int, std: bool = True) -> str:
        """The cell in markdown, plain, latex or html."""
        digits = self.digits if self.digits is not None else digits
        if self.kind == "plain":
            return esc(self.text, fmt)
        if np.isnan(self.mean):
            return "–" if fmt != "latex" else "--"
        core = f"{self.mean:+.{digits}f}" if self.kind == "delta" else f"{self.mean:.{digits}f}"
        core = core.replace("-", "−" if fmt != "latex" else "$-$")
        spread = self.spread(std)
        if fmt == "latex":
            return self._latex(core, spread, digits)
        shown = f"± {self.std:.{digits}f}" if spread == "±" else f"({spread})" if spread else ""
        text = " ".join(filter(None, [core, shown])) + self.mark
        if fmt == "markdown":
            return {1: f"**{text}**", 2: f"_{text}_"}.get(self.rank, text)
        if fmt == "html":
            return {1: f"<b>{html.escape(text)}</b>", 2: f"<u>{html.escape(text)}</u>"}.get(self.rank,
                                                                                           html.escape(text))
        return text

    def _latex(self, core: str, spread: str, digits: int) -> str:
        body = {1: f"\\textbf{{{core}}}", 2: f"\\underline{{{core}}}"}.get(self.rank, core)
        if spread == "±":
            body += f"$_{{\\pm {self.std:.{digits}f}}}$"
        elif spread == "n=1":
            body += "$^{\\dagger}$"
        elif spread:
            body += "$^{\\ddagger}$"
        return body + LATEX_MARKS.get(self.mark, "")


@dataclass
class Table:
    """A table to render: header, body rows (label + cells), row blocks, notes, caption, label.

    `columns` holds (group, name) per data column (group "" for a flat header); a row label with
    several stub columns joins them with \\x1f; `groups` are the row indices that start a new block
    (a \\midrule in LaTeX); `legend` lines explain the marks and are printed under the table."""

    title: str
    columns: list[tuple[str, str]]
    rows: list[tuple[str, list[Cell]]]
    groups: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    caption: str = ""
    label: str = ""
    stub: str = "Method"
    std: bool = True
    legend: list[str] = field(default_factory=list)

    def stub_names(self) -> list[str]:
        """The names of the stub (row label) columns."""
        return self.stub.split("\x1f")


_LATEX_ESCAPES = (("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"),
                  ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}"), ("→", r"$\to$"),
                  ("±", r"$\pm$"), ("–", "--"), ("−", "$-$"), ("<", "$<$"), (">", "$>$"), ("†", r"$^\dagger$"),
                  ("‡", r"$^\ddagger$"), ("§", r"\S{}"), ("Δ", r"$\Delta$"), ("≠", r"$\neq$"))


def esc(text: Any, fmt: str) -> str:
    """Text made safe for the format: LaTeX specials escaped (ASCII output), html escaped."""
    text = str(text)
    if fmt == "latex":
        text = text.replace("\\", "\x00")
        for a, b in _LATEX_ESCAPES:
            text = text.replace(a, b)
        return text.replace("\x00", r"\textbackslash{}")
    if fmt == "html":
        return html.escape(text)
    return text


def rank(cells: list[Cell], higher_better: bool = True) -> None:
    """Rank 1 for the best mean(s) of a column, 2 for the second-best distinct mean; nothing is
    ranked in a column with fewer than two values (a one-row table bolds nothing)."""
    present = [c for c in cells if not np.isnan(c.mean)]
    if len(present) < 2:
        return
    values = sorted({c.mean for c in present}, reverse=higher_better)
    for c in present:
        if c.mean == values[0]:
            c.rank = 1
        elif len(values) > 1 and c.mean == values[1]:
            c.rank = 2
