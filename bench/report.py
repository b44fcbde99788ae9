"""`bench report`: tables (and figures) from result records, never re-training. The top floor of
the report: it reads the request, assembles each sweep's tables and notes, and renders them.

Per sweep (or one merged table for several with `--merge`, see `bench.report_merge`):

- the main table, paper layout (rows = configurations, columns = datasets x (I→T, T→I, Avg)) or
  long layout (a row per dataset and configuration), mean ± sample std over seeds, best mean per
  column in bold and the second underlined, caption and legend in every format; a note names
  rows whose runs selected their last epoch; published numbers (`--against`) as rows of their own;
- the ablation table whenever variants and their full model share a dataset (`bench.report_ablation`),
  and with `--stats` a table of every comparison's p-value, adjusted p-value and 95 % interval;
- with `--cost` a cost table; with `--diag` the diagnostics of `bench.report_diag` (modality gap
  beside the metric, its ablation, AP per label) and, with `--figures`, their figures; under the
  tables, failed runs and runs or seeds without a record.

LaTeX labels are unique: `--label L` gives `L-<sweep>`, `L-<sweep>-ablation`, `L-<sweep>-stats`
and `L-<sweep>-cost`, and the LaTeX output's first lines list them. Which records are covered
(names, files, overrides, filters) is `bench.report_select`'s rule; `--format csv` is
`bench.report_csv`; `--names` is `bench.report_names`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.records import iter_records, scan_records
from bench.report_ablation import Comparison, ablation_table, comparisons, stats_table
from bench.report_cells import Table
from bench.report_csv import per_seed_csv, summary_csv
from bench.report_diag import diag_columns, diag_tables
from bench.report_frame import (
    DIR_TITLES,
    DIRECTIONS,
    OPTIMISTIC,
    Metric,
    available_metrics,
    parse_metric,
    records_frame,
    summarise,
)
from bench.report_merge import check_mergeable
from bench.report_names import Names, load_names
from bench.report_notes import last_epoch_note, missing_notes, nan_notes, threads_note
from bench.report_published import Published, add_published, load_published
from bench.report_render import render_table
from bench.report_select import Selection, other_configurations, select
from bench.report_tables import cost_table, long_table, paper_table

FORMATS = ("markdown", "plain", "latex", "csv", "html")
LAYOUTS = ("paper", "long")


@dataclass(frozen=True)
class TableOptions:
    """What the tables show (`build`'s options; `bench report`'s flags of the same names)."""

    layout: str = "paper"
    metric: str = "map"
    caption: str | None = None
    label: str | None = None
    cost: bool = False
    test: str = "t"
    stats: bool = False
    merge: bool = False
    against: str | None = None
    names: str | None = None
    diag: bool = False


@dataclass(frozen=True)
class ReportRequest(TableOptions):
    """What `bench report` was asked for: the table options, and what to read and write. The CLI
    fills it, `produce` carries it out."""

    items: tuple[str, ...] = ()  # sweep names, sweep files and KEY=VALUE overrides
    results: Path = Path("results")
    fmt: str = "markdown"
    digits: int = 4
    per_seed: bool = False
    methods: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    multirun: bool = False
    output: Path | None = None
    figures: Path | None = None

    def table_options(self) -> dict[str, Any]:
        """The `TableOptions` part, as `build` takes it."""
        return {f.name: getattr(self, f.name) for f in fields(TableOptions)}


@dataclass
class Report:
    """Everything a report shows, before rendering."""

    sweeps: list[str]
    tables: dict[str, list[Table]]
    notes: dict[str, list[str]]
    metric: Metric
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    records: list[dict[str, Any]] = field(default_factory=list)
    comparisons: dict[str, list[Comparison]] = field(default_factory=dict)
    names: Names = field(default_factory=Names)
    published: list[Published] = field(default_factory=list)
    general: list[str] = field(default_factory=list)  # lines about the whole report
    stats: bool = False  # --stats: the csv summary gets the ablation columns


def latex_label(label: str | None, sweep: str, suffix: str = "") -> str:
    """`L-<sweep><suffix>` (characters LaTeX labels cannot hold become '-'), or '' without a label."""
    return f"{label}-{re.sub(r'[^A-Za-z0-9:._+-]', '-', sweep)}{suffix}" if label else ""


def _records(records: list[dict[str, Any]], keys: set[str] | None,
             selection: Selection | None) -> list[dict[str, Any]]:
    if keys is not None:
        records = [r for r in records if r["key"] in keys]
    return selection.keep(records) if selection is not None else records


def _check_metric(df: pd.DataFrame, m: Metric, where: str, others: dict[str, str]) -> None:
    if df.empty and others:
        raise BenchError(f"no finished runs of what {where} defines; " + "; ".join(others.values()))
    if df.empty:
        raise BenchError(f"no finished runs found for {where}; run `bench run SWEEP.yaml` first")
    recorded_nan = "nan_metrics" in df and df["nan_metrics"].str.split().apply(lambda ks: m.keys["i2t"] in ks).any()
    if m.keys["i2t"] not in df or (df[m.keys["i2t"]].isna().all() and not recorded_nan):
        why = {reason for u in df.get("undefined", []) for k, reason in json.loads(u).items() if k in m.keys.values()}
        because = f" ({'; '.join(sorted(why))})" if why else ""
        raise BenchError(f"no record holds metric '{m.name}'{because}; available: {', '.join(available_metrics(df))}")


def _main_table(summary: pd.DataFrame, df: pd.DataFrame, m: Metric, sweep: str, opts: TableOptions,
                names: Names, extra: list[str]) -> Table:
    if opts.layout == "paper":
        main = paper_table(summary, m, sweep, names)
    else:
        main = long_table(summary, m, sweep, extra, names)
    # how the best two are marked differs by format (markdown has no underline): the legend says it
    main.caption = opts.caption or f"{m.title} on the test split, mean ± sample std over seeds"
    main.label = latex_label(opts.label, sweep)
    if extra and opts.layout == "paper":
        main.notes.append("Test-selected (optimistic) figures are recorded; `--layout long` shows them.")
    main.notes += [n for sw, n in df.attrs.get("config_notes", []) if sw == sweep]
    main.notes += [n for n in (last_epoch_note(df, sweep, names), threads_note(df, sweep, names)) if n]
    return main


def _published(tables: list[Table], summary: pd.DataFrame, m: Metric, sweep: str, opts: TableOptions,
               entries: list[Published], names: Names) -> set[Published]:
    """Add the published rows (paper layout: to the main table; long: a table of their own)."""
    datasets = list(dict.fromkeys(summary[summary["sweep"] == sweep]["dataset"]))
    keys = [(ds, d) for ds in datasets for d in DIRECTIONS]
    target = tables[0]
    if opts.layout == "long":
        target = Table(f"{sweep}: published numbers", [(names.dataset(ds), DIR_TITLES[d]) for ds, d in keys], [],
                       caption=f"Published {m.title} (not measured here)", std=False)
    left = add_published(target, keys, entries, m, names)
    if target is not tables[0] and target.rows:
        tables.insert(1, target)
    return {e for e in entries if e.metric == m.name} - set(left)


def _sweep_tables(df: pd.DataFrame, summary: pd.DataFrame, m: Metric, sweep: str, opts: TableOptions, names: Names,
                  extra: list[str], by_key: dict[str, dict[str, Any]]) -> tuple[list[Table], list[Comparison]]:
    tables = [_main_table(summary, df, m, sweep, opts, names, extra)]
    found, skipped = comparisons(df, m, sweep, opts.test)
    ablation = ablation_table(df, m, sweep, opts.test, names=names, found=found, skipped=skipped)
    if ablation is not None:
        ablation.label = latex_label(opts.label, sweep, "-ablation")
        tables.append(ablation)
        if opts.stats:
            stats = stats_table(found, sweep, names=names)
            stats.label = latex_label(opts.label, sweep, "-stats")
            tables.append(stats)
    elif opts.stats:
        tables[0].notes.append("--stats: no comparison to show (no variant shares a dataset with its full model).")
    if opts.cost:
        cost = cost_table(summary, sweep, names)
        cost.label = latex_label(opts.label, sweep, "-cost")
        tables.append(cost)
    if opts.diag:
        diag = diag_tables(df, summary, by_key, m, sweep, names, opts.test)
        for suffix, table in diag:
            table.label = latex_label(opts.label, sweep, suffix)
        tables += [table for _, table in diag]
        if not diag:
            tables[0].notes.append("--diag: no run of this sweep kept its embeddings (rerun with --force; "
                                   "--no-embeddings turns them off).")
    return tables, found


def build(results: Path, sweeps: list[str] | None = None, keys: set[str] | None = None, *,
          selection: Selection | None = None, records: list[dict[str, Any]] | None = None,
          **options: Any) -> Report:
    """Read the records (or take them, already read) and assemble the tables and notes of each
    sweep (options: layout, metric, caption, label, cost, test, stats, merge, against, names; see
    `ReportRequest`)."""
    opts = TableOptions(**options)
    if opts.layout not in LAYOUTS:
        raise BenchError(f"unknown layout '{opts.layout}'; use paper or long")
    m, names = parse_metric(opts.metric), load_names(opts.names)
    entries = load_published(opts.against) if opts.against else []
    every = iter_records(results, sweeps) if records is None else records
    records = _records(every, keys, selection)
    order = list(dict.fromkeys(sweeps or [r["spec"]["sweep"] for r in records]))
    if opts.merge:
        check_mergeable(records, order)
    df = records_frame(records, reference=selection.reference if selection else None,
                       merge=order if opts.merge else None)
    others = other_configurations(every, selection) if selection else {}
    _check_metric(df, m, ", ".join(sweeps) if sweeps else str(results), others)
    extra = [OPTIMISTIC] if OPTIMISTIC in df and df[OPTIMISTIC].notna().any() else []
    cost_cols = ["cost_fit_s", "cost_params", "cost_peak_mb"] if opts.cost else []
    diag_cols = [c for c in diag_columns() if c in df] if opts.diag else []
    summary = summarise(df, [m.keys[d] for d in DIRECTIONS] + extra + cost_cols + diag_cols)
    rep = Report(list(dict.fromkeys(df["sweep"])), {}, {}, m, df, summary, records, names=names, published=entries,
                 stats=opts.stats)
    shown: set[Published] = set()
    for sweep in rep.sweeps:
        rep.tables[sweep], rep.comparisons[sweep] = _sweep_tables(df, summary, m, sweep, opts, names, extra,
                                                                  {r["key"]: r for r in records})
        shown |= _published(rep.tables[sweep], summary, m, sweep, opts, entries, names)
        origins = list(dict.fromkeys(df[df["sweep"] == sweep]["origin"]))
        expected = {k: v for o in origins for k, v in (selection.expected.get(o, {}) if selection else {}).items()}
        rep.notes[sweep] = missing_notes(records, df, sweep, expected, origins) + [others[o] for o in origins
                                                                                    if o in others]
        rep.notes[sweep] += nan_notes(df, sweep, m)
    unshown = [e for e in entries if e not in shown]
    if unshown:
        rep.general.append("Published numbers not shown (another metric, or no such dataset here): " + "; ".join(
            f"{e.method} on {e.dataset} ({e.metric})" for e in unshown) + ".")
    return rep


def _html(rep: Report, digits: int, figures: list[Any]) -> str:
    from bench.report_html import Section, page

    sections = []
    for sweep in rep.sweeps:
        mine = [(f.path, f.caption) for f in figures if getattr(f, "sweep", None) == sweep
                and Path(f.path).suffix == ".png"]
        mine += [(Path(p), Path(p).stem) for p in figures if isinstance(p, (str, Path)) and Path(p).suffix == ".png"
                 and f"_{sweep}__" in Path(p).name]
        sections.append(Section(sweep, [render_table(t, "html", digits) for t in rep.tables[sweep]],
                                rep.notes[sweep], mine))
    if rep.general:
        sections.append(Section("About this report", [], rep.general))
    return page(f"bench report: {', '.join(rep.sweeps)}", f"Metric {rep.metric.title} on the test split.", sections)


def render(rep: Report, fmt: str = "markdown", digits: int = 4, figures: list[Any] | None = None,
           per_seed: bool = False) -> str:
    """The report as text (markdown, plain, latex), csv (the summary, or one row per seed with
    `per_seed`) or one self-contained html page (`figures`: `Figure`s or PNG paths to embed)."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown report format '{fmt}'; use one of {', '.join(FORMATS)}")
    found = [c for sweep in rep.sweeps for c in rep.comparisons.get(sweep, [])]
    if fmt == "csv":
        if per_seed:
            return per_seed_csv(rep.frame, rep.metric, found)
        return summary_csv(rep.summary, rep.metric, found if rep.stats else None, rep.published)
    if fmt == "html":
        return _html(rep, digits, figures or [])
    mark = "% " if fmt == "latex" else ""
    parts = []
    labels = [t.label for ts in rep.tables.values() for t in ts if t.label]
    if fmt == "latex" and labels:
        parts.append("% One \\label per table (--label L gives L-<sweep>, L-<sweep>-ablation, L-<sweep>-stats, "
                     "L-<sweep>-cost): " + ", ".join(labels))
    for sweep in rep.sweeps:
        parts += [render_table(table, fmt, digits) for table in rep.tables[sweep]]
        if rep.notes[sweep]:
            parts.append("\n".join(f"{mark}{line}" for line in rep.notes[sweep]))
    if rep.general:
        parts.append("\n".join(f"{mark}{line}" for line in rep.general))
    return "\n\n".join(parts) + "\n"


def report(results: Path, sweeps: list[str] | None = None, keys: set[str] | None = None,
           fmt: str = "markdown", digits: int = 4, **options: Any) -> str:
    """Render the report of the given sweeps (all under `results` when None); options as `build`
    takes them, plus `per_seed` (csv) and `figures` (html)."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown report format '{fmt}'; use one of {', '.join(FORMATS)}")
    figures, per_seed = options.pop("figures", None), options.pop("per_seed", False)
    return render(build(results, sweeps, keys, **options), fmt, digits, figures, per_seed)


def _check(req: ReportRequest) -> None:
    """Everything about the request that can be checked before a record is read."""
    if req.fmt not in FORMATS:
        raise BenchError(f"unknown report format '{req.fmt}'; use one of {', '.join(FORMATS)}")
    parse_metric(req.metric)
    if req.per_seed and req.fmt != "csv":
        raise BenchError("--per-seed is a CSV layout (one row per seed); add --format csv")
    load_names(req.names)
    if req.against:
        load_published(req.against)


def produce(req: ReportRequest, echo: Callable[..., None]) -> None:
    """Carry out a request: select, build, draw, render, write (`echo(text, err=False, nl=True)`).
    Everything is checked before anything is written."""
    import tempfile

    from bench.outputs import check_outputs
    from bench.records import write_atomic
    from bench.report_figures import draw_all
    from bench.report_plot import FigureSource

    _check(req)
    check_outputs(req.output, req.figures)  # a bad -o or --figures is refused before anything is read or drawn
    sel = select(req.items, req.results, methods=req.methods, datasets=req.datasets, multirun=req.multirun)
    records, unusable = scan_records(req.results, sel.names or None)
    if unusable:
        path, why = unusable[0]
        echo(f"note: skipped {len(unusable)} unreadable record(s), e.g. {path}: {why}", err=True)
    rep = build(req.results, sel.names or None, selection=sel, records=records, **req.table_options())
    per_seed = req.per_seed or (req.fmt == "csv" and req.layout == "long")
    with tempfile.TemporaryDirectory() as tmp:
        fig_dir = req.figures or (Path(tmp) if req.fmt == "html" else None)
        source = FigureSource(rep.frame, {r["key"]: r for r in rep.records}, names=rep.names)
        figures = draw_all(source, fig_dir) if fig_dir else []
        if fig_dir and req.diag:
            from bench.report_diag_figures import draw_diag

            figures += draw_diag(source, fig_dir, req.results)
        text = render(rep, req.fmt, req.digits, figures, per_seed)
    for fig in figures if req.figures else []:
        echo(f"wrote {fig.path}", err=True)
    if req.output:
        write_atomic(Path(req.output), text)
        echo(f"wrote {req.output}")
    else:
        echo(text, nl=False)
