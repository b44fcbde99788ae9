"""Render one `Table` as markdown (tabulate pipe), plain text (tabulate simple), LaTeX or html
(pandas' Styler): title, caption, the table, the legend of its marks and its notes, in every
format (LaTeX: a complete `table` environment with \\caption, \\label, booktabs rules, a \\cmidrule
under each dataset, a \\midrule between row blocks and the legend and notes in a footnote-size
paragraph under the tabular).
"""

from __future__ import annotations

import pandas as pd

from bench.errors import BenchError
from bench.report_cells import Table, esc

TEXT_FORMATS = ("markdown", "plain", "latex", "html")

LEGEND = {
    "spread": {"text": "Mean ± sample standard deviation over seeds.",
               "latex": r"Mean$_{\pm\mathrm{std}}$ over seeds (sample standard deviation)."},
    "ranks": {"text": "Best mean per column in bold, second underlined.",
              "markdown": "Best mean per column in bold, second in italics.",
              "latex": "Best in bold, second underlined."},
    "n1": {"text": "(n=1): one seed, no standard deviation.",
           "latex": r"$^\dagger$ one seed: no standard deviation."},
    "deterministic": {"text": "(deterministic): the same value on every seed.",
                      "latex": r"$^\ddagger$ the same value for every seed (deterministic)."},
}


def legend_lines(table: Table, fmt: str) -> list[str]:
    """The legend of the marks a table uses, in the format's words (LaTeX lines are raw LaTeX)."""
    return [LEGEND[k].get(fmt, LEGEND[k]["text"]) for k in table.legend]


def _notes(table: Table) -> list[str]:
    caption = table.caption.rstrip(".")
    return [n for n in table.notes if n.rstrip(".") != caption]


def _sentence(note: str) -> str:
    """A note as a sentence (notes are joined into one paragraph under a LaTeX table)."""
    return note if note.rstrip().endswith((".", "!", "?")) else note.rstrip() + "."


def _body(table: Table, fmt: str, digits: int) -> tuple[list[str], list[list[str]]]:
    """Header names and string rows for tabulate (flat header: group and name joined)."""
    head = table.stub_names() + [f"{g} {n}".strip() for g, n in table.columns]
    rows = [[esc(x, fmt) for x in label.split("\x1f")] + [c.render(fmt, digits, table.std) for c in cells]
            for label, cells in table.rows]
    return head, rows


def _text(table: Table, fmt: str, digits: int) -> str:
    from tabulate import tabulate

    head, rows = _body(table, fmt, digits)
    stub = len(table.stub_names())
    text = tabulate(rows, head, tablefmt="pipe" if fmt == "markdown" else "simple", disable_numparse=True,
                    colalign=["left"] * stub + ["right"] * (len(head) - stub))
    parts = [f"### {table.title}" if fmt == "markdown" else table.title]
    if table.caption:
        parts.append(table.caption.rstrip(".") + ".")
    parts.append(text)
    tail = legend_lines(table, fmt) + _notes(table)
    if tail:
        parts.append("\n".join(tail))
    return "\n\n".join(parts)


def render_table(table: Table, fmt: str, digits: int = 4) -> str:
    """One table in markdown, plain, latex or html."""
    if fmt in ("markdown", "plain"):
        return _text(table, fmt, digits)
    if fmt == "latex":
        return latex_table(table, digits)
    if fmt == "html":
        return html_table(table, digits)
    raise BenchError(f"unknown table format '{fmt}'; use one of {', '.join(TEXT_FORMATS)}")


def _frame(table: Table, fmt: str, digits: int) -> pd.DataFrame:
    """The table as a DataFrame of rendered strings, with (group, name) MultiIndex columns."""
    labels = [[esc(x, fmt) for x in label.split("\x1f")] for label, _ in table.rows]
    for prev, cur in zip(labels[::-1][1:], labels[::-1][:-1]):  # a repeated first level is printed once
        if len(cur) > 1 and cur[0] == prev[0]:
            cur[0] = ""
    index = pd.MultiIndex.from_tuples([tuple(x) for x in labels]) if len(table.stub_names()) > 1 else \
        pd.Index([x[0] for x in labels])
    heads = [(esc(g, fmt), esc(n, fmt)) for g, n in table.columns]
    grouped = any(g for g, _ in table.columns)
    columns = pd.MultiIndex.from_tuples(heads) if grouped else pd.Index([n for _, n in heads])
    return pd.DataFrame([[c.render(fmt, digits, table.std) for c in cells] for _, cells in table.rows],
                        index=index, columns=columns)


def _cmidrules(lines: list[str], table: Table, stub: int) -> None:
    """A \\cmidrule under each dataset of a two-level header."""
    spans, col = [], stub + 1
    for g in dict.fromkeys(g for g, _ in table.columns):
        width = sum(1 for h, _ in table.columns if h == g)
        spans.append(f"\\cmidrule(lr){{{col}-{col + width - 1}}}")
        col += width
    top = next(i for i, line in enumerate(lines) if line.startswith("\\toprule"))
    lines.insert(top + 2, " ".join(spans))


def _midrules(lines: list[str], groups: list[int]) -> None:
    """A \\midrule before the first row of each block."""
    first = next(i for i, line in enumerate(lines) if line.startswith("\\midrule")) + 1
    for offset in sorted(groups, reverse=True):
        lines.insert(first + offset, "\\midrule")


def _resize(lines: list[str]) -> int:
    """Scale the tabular to the text width (six or more columns overflow a paper's column);
    returns the index of the line that closes it."""
    begin = next(i for i, line in enumerate(lines) if line.startswith("\\begin{tabular}"))
    end = next(i for i, line in enumerate(lines) if line.startswith("\\end{tabular}"))
    lines.insert(end + 1, "}")
    lines.insert(begin, "\\resizebox{\\linewidth}{!}{%")
    return end + 2


def latex_table(table: Table, digits: int) -> str:
    """A complete `table` environment: caption, label, booktabs rules, legend and notes."""
    frame = _frame(table, "latex", digits)
    stub = len(table.stub_names())
    caption = table.caption or table.title
    latex = frame.style.to_latex(
        hrules=True, multicol_align="c", caption=esc(caption, "latex"), label=table.label or None,
        position="t", position_float="centering", column_format="l" * stub + "c" * len(table.columns),
        environment="table", sparse_index=False)
    lines = latex.splitlines()
    if any(g for g, _ in table.columns):
        _cmidrules(lines, table, stub)
    _midrules(lines, table.groups)
    wide = len(table.columns) + stub > 5
    end = _resize(lines) if wide else next(i for i, line in enumerate(lines) if line.startswith("\\end{tabular}"))
    tail = legend_lines(table, "latex") + [esc(_sentence(n), "latex") for n in _notes(table)]
    if tail:
        lines.insert(end + 1, "\\par\\smallskip{\\footnotesize " + " ".join(tail) + "}")
    packages = "booktabs" + (",graphicx" if wide else "")
    header = (f"% Generated by `bench report`. Needs \\usepackage{{{packages}}} in the preamble (booktabs: \\toprule, "
              "\\midrule, \\cmidrule, \\bottomrule" + ("; graphicx: \\resizebox" if wide else "")
              + "); \\textbf and \\underline are built in.")
    return "\n".join([header, *lines])


def html_table(table: Table, digits: int) -> str:
    """An html table with its caption, the legend of its marks and its notes."""
    frame = _frame(table, "html", digits)
    styler = frame.style.set_table_attributes('class="bench"')
    if table.caption:
        styler = styler.set_caption(esc(table.caption.rstrip(".") + ".", "html"))
    body = styler.to_html()
    tail = legend_lines(table, "html") + _notes(table)
    notes = "".join(f"<p class=\"note\">{esc(n, 'html')}</p>" for n in tail)
    return f"<h3>{esc(table.title, 'html')}</h3>\n{body}{notes}"
