"""`bench report --format html`: one self-contained page (tables, notes and figures embedded as
base64 PNG), readable offline in any browser."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 78rem;
       color: #1d2125; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ccd; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
table.bench { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.88rem; }
table.bench th, table.bench td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #e3e3e8; text-align: right; }
table.bench th { background: #f4f5f8; } table.bench th.row_heading { text-align: left; }
table.bench thead th { text-align: center; }
p.note { font-size: 0.85rem; color: #444; margin: 0.3rem 0; }
ul.missing { font-size: 0.85rem; color: #8a1c1c; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #e3e3e8; }
figcaption { font-size: 0.8rem; color: #555; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.stem)}</figcaption></figure>")


def page(rep: Any, digits: int, figures: list[Path]) -> str:
    """The whole report as one HTML document (no external resources)."""
    from bench.report import render_table

    parts = [f"<h1>bench report: {html.escape(', '.join(rep.sweeps))}</h1>",
             f"<p class=\"note\">Metric {html.escape(rep.metric.title)} on the test split; generated "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the run records.</p>"]
    pngs = [p for p in figures if Path(p).suffix == ".png"]
    for sweep in rep.sweeps:
        parts.append(f"<h2>{html.escape(sweep)}</h2>")
        parts += [render_table(t, "html", digits) for t in rep.tables[sweep]]
        if rep.notes[sweep]:
            parts.append('<ul class="missing">' + "".join(f"<li>{html.escape(n)}</li>" for n in rep.notes[sweep])
                         + "</ul>")
        mine = [p for p in pngs if f"_{_safe(sweep)}__" in Path(p).name]
        if mine:
            parts.append("<h3>Figures</h3>" + "".join(_img(p) for p in mine))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>bench report: {html.escape(', '.join(rep.sweeps))}</title><style>{STYLE}</style></head>"
            "<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
