"""Published numbers beside the measured ones (`bench report --against FILE.yaml`).

A published-numbers file holds numbers copied from papers, each with its source, and the report
shows them as rows marked "(published)" in a block of their own under the measured rows: never
ranked with, averaged with or mistaken for what this harness measured.

    entries:
      - method: pgnn_con            # the method identifier of the records (display: --names)
        dataset: mirflickr          # the dataset label of the sweep
        metric: map                 # map, map@K or p@K (the report's --metric picks the entries)
        i2t: 0.0                    # image->text; numbers as fractions in [0, 1]
        t2i: 0.0                    # text->image
        avg: 0.0                    # optional: the paper's average (else the mean of i2t and t2i)
        source:
          paper: "authors, title, venue year"
          table: "Table N"
          protocol: "test-selected"  # how the paper chose what it reports (e.g. best epoch on test)
          url: "https://..."         # optional

Only numbers checked against a public source belong in a shipped file; the files under
`bench/published/` say which ones they hold and where each comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.report_cells import Cell, Table
from bench.report_frame import Metric, parse_metric
from bench.report_names import Names

SHIPPED = Path(__file__).parent / "published"
_ENTRY_KEYS = {"method", "dataset", "metric", "i2t", "t2i", "avg", "source"}
_SOURCE_KEYS = {"paper", "table", "protocol", "url"}


@dataclass(frozen=True, eq=False)  # compared by identity: each entry of a file is its own number
class Published:
    """One published result: a method on a dataset, per direction, with its source."""

    method: str
    dataset: str
    metric: str
    values: dict[str, float]
    paper: str
    table: str
    protocol: str
    url: str = ""
    avg_computed: bool = False


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise BenchError(f"{where}: expected a number in [0, 1] (a fraction, not a percentage), got {value!r}")
    return float(value)


def _source(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or set(raw) - _SOURCE_KEYS:
        raise BenchError(f"{where}.source: expected a mapping with paper, table, protocol (and optionally url)")
    for key in ("paper", "table", "protocol"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise BenchError(f"{where}.source.{key}: every published number needs its {key} (non-empty text)")
    return raw


def _entry(raw: Any, where: str) -> Published:
    if not isinstance(raw, dict) or set(raw) - _ENTRY_KEYS:
        extra = sorted(set(raw) - _ENTRY_KEYS) if isinstance(raw, dict) else []
        raise BenchError(f"{where}: expected a mapping with {', '.join(sorted(_ENTRY_KEYS))}"
                         + (f"; unknown key {extra[0]!r}" if extra else ""))
    for key in ("method", "dataset"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise BenchError(f"{where}.{key}: expected a name")
    metric = parse_metric(str(raw.get("metric", "map"))).name
    values = {d: _number(raw.get(d), f"{where}.{d}") for d in ("i2t", "t2i")}
    computed = raw.get("avg") is None
    values["avg"] = (values["i2t"] + values["t2i"]) / 2 if computed else _number(raw["avg"], f"{where}.avg")
    src = _source(raw.get("source"), where)
    return Published(raw["method"], raw["dataset"], metric, values, src["paper"], src["table"], src["protocol"],
                     src.get("url", ""), computed)


def published_path(value: str) -> Path:
    """A file path, or the name of a shipped file (`tpami2023` -> bench/published/tpami2023.yaml)."""
    path = Path(value)
    if path.is_file():
        return path
    shipped = SHIPPED / f"{value}.yaml"
    if len(path.parts) == 1 and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.yaml")))
    raise BenchError(f"--against: no such file {value}; pass a published-numbers YAML file or a shipped one: {names}")


def load_published(value: str) -> list[Published]:
    """Read and check a published-numbers file (strict YAML: duplicate keys and aliases bombs refused)."""
    from bench.sweep import read_yaml

    path = published_path(value)
    raw = read_yaml(path)
    where = f"--against {path}"
    if raw is None or not isinstance(raw, dict) or set(raw) - {"entries"}:
        raise BenchError(f"{where}: expected a mapping with one key, 'entries' (a list)")
    entries = raw.get("entries") or []
    if not isinstance(entries, list):
        raise BenchError(f"{where}: 'entries' must be a list")
    return [_entry(e, f"{where}: entries[{i}]") for i, e in enumerate(entries)]


def add_published(table: Table, keys: list[tuple[str, str]], entries: list[Published], metric: Metric,
                  names: Names | None = None) -> list[Published]:
    """Append rows "<method> (published)" to a paper-layout table (columns `keys` = (dataset label,
    direction)) as a block of their own, unranked, with a note per source; returns the entries of
    this metric whose dataset the table does not have."""
    names = names or Names()
    mine = [e for e in entries if e.metric == metric.name]
    shown = [e for e in mine if any(ds == e.dataset for ds, _ in keys)]
    methods = list(dict.fromkeys(e.method for e in shown))
    if not methods:
        return mine
    by = {(e.method, e.dataset): e for e in shown}
    start = len(table.rows)
    for method in methods:
        cells = []
        for ds, d in keys:
            e = by.get((method, ds))
            cells.append(Cell(np.nan, kind="value") if e is None else Cell(e.values[d], kind="value"))
        table.rows.append((f"{names.method(method)} (published)", cells))
    if start:
        table.groups.append(start)
    table.notes.append("Rows marked (published) are numbers copied from papers, not measured here, never ranked "
                       "or averaged with the measured rows: " + "; ".join(_cite(e, names) for e in shown) + ".")
    if any(e.avg_computed for e in shown):
        table.notes.append("Published Avg: the mean of the published I→T and T→I where the paper gives no average.")
    return [e for e in mine if e not in shown]


def _cite(e: Published, names: Names) -> str:
    url = f", {e.url}" if e.url else ""
    return (f"{names.method(e.method)} on {names.dataset(e.dataset)}: {e.paper}, {e.table}, protocol "
            f"{e.protocol}{url}")

