"""`bench report`: the options, parsed into a `bench.report.ReportRequest` and handed to
`bench.report.produce`; nothing else happens here."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli_options import plugins_option, results_option, results_root


@click.command("report")
@click.argument("items", nargs=-1, metavar="[SWEEP | SWEEP.yaml | KEY=VALUE]...")
@results_option
@click.option("--method", "-s", "methods", multiple=True, metavar="PATTERN",
              help="only methods whose name or label matches (wildcards; repeatable), as in bench run")
@click.option("--dataset", "-d", "datasets", multiple=True, metavar="PATTERN",
              help="only datasets whose name or label matches (wildcards; repeatable), as in bench run")
@click.option("--multirun", "-m", is_flag=True, help="comma-separated override values are a grid, as in bench run")
@click.option("--format", "fmt", type=click.Choice(["markdown", "plain", "latex", "csv", "html"]),
              default="markdown", show_default=True,
              help="html: one self-contained page with the tables and figures; csv: the summary (or one row per "
                   "seed with --layout long / --per-seed)")
@click.option("--layout", type=click.Choice(["paper", "long"]), default="paper", show_default=True,
              help="paper: rows = configurations, columns = datasets x (I→T, T→I, Avg); long: a row per dataset "
                   "and configuration (csv: a row per seed)")
@click.option("--metric", default="map", show_default=True, metavar="NAME",
              help="map (mAP@all), map@K or p@K, as the records hold them")
@click.option("--digits", default=4, show_default=True, type=click.IntRange(0, 10), help="decimals in the table")
@click.option("--caption", default=None, help="caption of the main table (every format)")
@click.option("--label", default=None, metavar="L",
              help="LaTeX labels, one per table: L-<sweep>, L-<sweep>-ablation, L-<sweep>-stats, L-<sweep>-cost")
@click.option("--cost", is_flag=True, help="add a cost table: training time, parameters, peak memory (and which)")
@click.option("--test", "stat_test", type=click.Choice(["t", "wilcoxon"]), default="t", show_default=True,
              help="paired test over seeds for the ablation table (Holm-corrected)")
@click.option("--stats", is_flag=True,
              help="add each ablation comparison's p-value, Holm-adjusted p-value and 95% CI of the difference")
@click.option("--merge", is_flag=True,
              help="one table for all the given sweeps (refused unless their shared datasets have the same data, "
                   "split and missing-modality protocol)")
@click.option("--against", default=None, metavar="FILE",
              help="published numbers (YAML, each with its source) as rows marked 'published'; or a shipped "
                   "file's name")
@click.option("--names", default=None, metavar="paper|FILE",
              help="display names for methods, variants and datasets: 'paper' (P-GNN-CON, w/o GAN, MIRFlickr) "
                   "or a YAML file with methods/variants/datasets mappings")
@click.option("--diag", is_flag=True,
              help="diagnostics from the runs' kept embeddings: modality gap (probe accuracy, centroid distance, "
                   "alignment, uniformity) beside mAP and per variant, AP per label; with --figures also per-label, "
                   "t-SNE and retrieval-gallery figures")
@click.option("--per-seed", is_flag=True, help="csv: one row per (sweep, dataset, method, configuration, seed)")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="write to a file instead")
@click.option("--figures", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="also write figures (PNG + PDF) to DIR: PR and P@K curves with a std band, validation mAP and "
                   "training loss per epoch, label adjacency")
@plugins_option
def report(items: tuple[str, ...], results: str | None, methods: tuple[str, ...], datasets: tuple[str, ...],
           multirun: bool, fmt: str, layout: str, metric: str, digits: int, caption: str | None,
           label: str | None, cost: bool, stat_test: str, stats: bool, merge: bool, against: str | None,
           names: str | None, diag: bool, per_seed: bool, output: str | None, figures: str | None) -> None:
    """Tables of mean ± std over seeds, from the records of sweeps (default: every sweep).

    A sweep NAME reports every record of that sweep. A sweep FILE, or a name with KEY=VALUE
    overrides or -s / -d / -m, reports exactly the runs `bench run` would run with the same
    arguments (the report of a command is that command with `report` in place of `run`); rows
    whose configuration is not the file's current definition say so, and records of the
    sweep's other configurations are counted in a note.
    """
    from bench.report import ReportRequest, produce

    request = ReportRequest(
        items=items, results=results_root(results), fmt=fmt, layout=layout,
        metric=metric, digits=digits, caption=caption, label=label, cost=cost, test=stat_test, stats=stats,
        merge=merge, against=against, names=names, per_seed=per_seed, methods=methods, datasets=datasets,
        multirun=multirun, output=Path(output) if output else None, figures=Path(figures) if figures else None,
        diag=diag)
    produce(request, click.echo)
