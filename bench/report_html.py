"""`bench report --format html`: one self-contained page (tables, notes and figures embedded as
base64 PNG), readable offline in any browser. The page is assembled from sections whose tables
are already rendered (`bench.report_render.html_table`); figures carry their own captions."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 78rem;
       color: #1d2125; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ccd; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
table.bench { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.88rem; }
table.bench caption { caption-side: top; text-align: left; font-size: 0.85rem; color: #333; padding: 0.3rem 0; }
table.bench th, table.bench td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #e3e3e8; text-align: right; }
table.bench th { background: #f4f5f8; } table.bench th.row_heading { text-align: left; }
table.bench thead th { text-align: center; }
p.note { font-size: 0.85rem; color: #444; margin: 0.3rem 0; }
ul.missing { font-size: 0.85rem; color: #8a1c1c; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #e3e3e8; }
figcaption { font-size: 0.8rem; color: #555; }
"""


@dataclass
class Section:
    """One sweep of the page: its rendered tables, the lines under them, its figures (PNG, caption)."""

    title: str
    tables: list[str]
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def page(title: str, intro: str, sections: list[Section]) -> str:
    """The whole report as one HTML document (no external resources)."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"note\">{html.escape(intro)} Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the run "
             "records.</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += section.tables
        if section.notes:
            parts.append('<ul class="missing">' + "".join(f"<li>{html.escape(n)}</li>" for n in section.notes)
                         + "</ul>")
        if section.figures:
            parts.append("<h3>Figures</h3>" + "".join(_img(p, c) for p, c in section.figures))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            "<body>\n" + "\n".join(parts) + "\n</body></html>\n")
