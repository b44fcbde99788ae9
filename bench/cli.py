"""The `bench` command line: run, report, list, ui, data."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cli_options import (
    MAX_PROCESSES,
    TEXT,
    Number,
    one_line,
    plugins_option,
    results_option,
    results_root,
    threads_option,
)
from bench.errors import BenchError


def summary_line(cmd: click.Command) -> str:
    """A command's whole one-line summary (click would cut it at 45 characters)."""
    return (cmd.short_help or (cmd.help or "").strip().split("\n")[0]).strip()


class Group(click.Group):
    """Turns user errors (BenchError) into one line on stderr and exit code 2; a full disk into one line, exit 1."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, each with its whole first docstring line."""
        rows = [(name, summary_line(cmd)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Keep the command line as typed (`bench run` stores it on the parent run and in records)."""
        ctx.meta["bench.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from bench.quiet import routed

        with routed():  # telemetry off, library logs as one line each (bench.quiet)
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        import errno

        try:
            return super().invoke(ctx)
        except BenchError as exc:
            click.echo(f"error: {one_line(str(exc))}", err=True)
            sys.exit(2)
        except click.UsageError as exc:  # a bad option or argument: one line too, not click's usage block
            where = f"`{exc.ctx.command_path} --help`" if exc.ctx is not None else "`bench --help`"
            click.echo(f"error: {one_line(exc.format_message())}; see {where}", err=True)
            sys.exit(2)
        except OSError as exc:
            where = f" writing {exc.filename}" if exc.filename else ""
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                what = "file size limit reached" if exc.errno == errno.EFBIG else "disk full"
                click.echo(f"error: {what}{where}; free some space and rerun (finished records are intact, "
                           "the interrupted run is redone)", err=True)
                sys.exit(1)
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                             errno.ENAMETOOLONG, errno.ENOENT):
                click.echo(f"error: {one_line(exc.strerror or str(exc))}{where or ''}; check the path and its "
                           "permissions", err=True)
                sys.exit(2)
            raise
        except MemoryError:
            click.echo("error: out of memory before the runs started; use smaller dataset or method parameters",
                       err=True)
            sys.exit(2)
        except RecursionError:
            click.echo("error: an input nests too deeply to be read; flatten it", err=True)
            sys.exit(2)


@click.group(cls=Group)
@click.version_option(package_name="bench")
def main() -> None:
    """Benchmark harness for multi-label cross-modal retrieval.

    Nothing phones home: third-party telemetry (MLflow's usage statistics, Hugging Face's) is off in
    every command; BENCH_TELEMETRY=on leaves the libraries' own defaults. Library warnings are one
    line each on stderr, their details (tracebacks) in <results>/bench.log.
    """


max_runs_option = click.option("--max-runs", type=Number(True, 1), default=None, metavar="N",
                               help="refuse sweeps of more than N runs (default 10000)")


def scale_options(func):
    """--workers / --scheduler / --cluster: run on Dask (see the manual's scale-out page)."""
    func = click.option("--cluster", "cluster_file", type=TEXT, default=None, metavar="FILE",
                        help="start workers on SLURM from a dask-jobqueue YAML file (needs bench[slurm])")(func)
    func = click.option("--scheduler", type=TEXT, default=None, metavar="ADDRESS",
                        help="use a running Dask cluster (tcp://host:8786) instead of a local one")(func)
    func = click.option("--workers", type=Number(True, 1, MAX_PROCESSES), default=None,
                        help="run on a local Dask cluster of N worker processes (with --cluster: SLURM jobs)")(func)
    return func


def selection_options(f):
    """Assignments (KEY=VALUE arguments), --method / --dataset filters and --multirun."""
    f = click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")(f)
    f = click.option("--method", "-s", "methods", type=TEXT, multiple=True, metavar="PATTERN",
                     help="run only methods whose name or label matches (wildcards; repeatable)")(f)
    f = click.option("--dataset", "-d", "datasets", type=TEXT, multiple=True, metavar="PATTERN",
                     help="run only datasets whose name or label matches (wildcards; repeatable)")(f)
    return click.option("--multirun", "-m", is_flag=True,
                        help="comma-separated override values sweep (a grid for method parameters)")(f)


def tracking_options(f):
    """--tracking-uri / --no-mlflow."""
    f = click.option("--no-mlflow", is_flag=True, help="do not log to MLflow (records are still written)")(f)
    return click.option("--tracking-uri", type=TEXT, default=None, metavar="URI",
                        help="MLflow tracking URI (default sqlite:///<results>/mlflow.db)")(f)


def cluster_options(workers: int | None, threads: int | None, scheduler: str | None, cluster_file: str | None,
                    probe: bool = True, results: Path | None = None):
    """The scale-out options, checked (a --scheduler must answer within seconds unless `probe` is
    off, as for a dry run; local workers need room for their socket under `results`), or None for
    the in-process (serial) path."""
    from bench.cluster import ClusterOptions

    opts = ClusterOptions(workers=workers, threads=threads, scheduler=scheduler, cluster_file=cluster_file)
    opts.check(probe=probe, results=results)
    return opts if opts.wanted else None


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


def command_line() -> str:
    """`bench ...` as typed (shell-quoted), from the arguments the main group received."""
    import shlex

    ctx = click.get_current_context()
    return shlex.join(["bench", *ctx.meta.get("bench.argv", [])])


@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@selection_options
@results_option
@click.option("--force", is_flag=True, help="rerun runs that already finished")
@click.option("--dry-run", is_flag=True, help="list the runs (and whether each is done) without running")
@click.option("--device", type=TEXT, default=None, help="override the sweep's device: auto, cpu, cuda, cuda:N")
@click.option("--embeddings-max", type=Number(True, 1, 10_000_000), default=None, metavar="N",
              help="keep a seeded sample of at most N test items' embeddings per run, for `bench report --diag` "
                   "(default 2000; float16, about 8 MB at D 1024)")
@click.option("--no-embeddings", is_flag=True, help="keep no embeddings (no diagnostics for these runs)")
@tracking_options
@threads_option
@plugins_option
@max_runs_option
@scale_options
def run(sweep_file: str, assignments: tuple[str, ...], methods: tuple[str, ...], datasets: tuple[str, ...],
        multirun: bool, results: str | None, force: bool, dry_run: bool, device: str | None,
        tracking_uri: str | None, no_mlflow: bool, threads: int | None, max_runs: int | None,
        workers: int | None, scheduler: str | None, cluster_file: str | None, embeddings_max: int | None,
        no_embeddings: bool) -> None:
    """Train and evaluate every (dataset, method, params, seed) of SWEEP_FILE; resumable.

    KEY=VALUE arguments override the file (seeds=[0] methods.pgnn_con.epochs=5
    datasets.synthetic.n=500); see "Command-line overrides" in the manual. --workers N runs them
    on N local Dask worker processes (see "Scale-out").
    """
    from bench.embeddings import EMBEDDINGS_MAX
    from bench.invocation import RunRequest, run_sweep
    from bench.progress import interactive
    from bench.sweep import MAX_RUNS

    root = results_root(results)
    req = RunRequest(sweep_file=sweep_file, results=root, assignments=assignments,
                     methods=methods, datasets=datasets, multirun=multirun, force=force, dry_run=dry_run,
                     device=device, tracking_uri=tracking_uri, mlflow=not no_mlflow, threads=threads,
                     max_runs=max_runs or MAX_RUNS,
                     scale=cluster_options(workers, threads, scheduler, cluster_file, probe=not dry_run,
                                           results=root),
                     command=command_line(), embeddings_max=0 if no_embeddings else embeddings_max or EMBEDDINGS_MAX)
    code = run_sweep(req, echo=click.echo, warn=_echo_err, show_progress=interactive())
    if code:
        sys.exit(code)



@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@selection_options
@results_option
@click.option("--trials", default=20, show_default=True, type=Number(True, 1, 10**6),
              help="trials to add to each study")
@click.option("--timeout", default=None, type=Number(False, 0.001), help="stop each study after this many seconds")
@click.option("--storage", type=TEXT, default=None, metavar="URL",
              help="Optuna storage URL for many machines (default: a journal file under the results)")
@click.option("--device", type=TEXT, default=None, help="override the sweep's device")
@tracking_options
@threads_option
@plugins_option
@max_runs_option
@scale_options
def tune(sweep_file: str, assignments: tuple[str, ...], methods: tuple[str, ...], datasets: tuple[str, ...],
         multirun: bool, results: str | None, trials: int, timeout: float | None, storage: str | None,
         device: str | None, tracking_uri: str | None, no_mlflow: bool, threads: int | None,
         max_runs: int | None, workers: int | None, scheduler: str | None, cluster_file: str | None) -> None:
    """Optuna studies on the VALIDATION split, one per (dataset, method) of SWEEP_FILE.

    Best parameters are saved as JSON; reuse them in a run sweep with `params_from: PATH`.
    """
    from bench.progress import interactive
    from bench.sweep import MAX_RUNS
    from bench.tune import TuneRequest, tune_sweep

    root = results_root(results)
    req = TuneRequest(sweep_file=sweep_file, results=root, trials=trials, timeout=timeout,
                      storage=storage, assignments=assignments, methods=methods, datasets=datasets,
                      multirun=multirun, device=device, tracking_uri=tracking_uri, mlflow=not no_mlflow,
                      threads=threads, max_runs=max_runs or MAX_RUNS,
                      scale=cluster_options(workers, threads, scheduler, cluster_file, results=root))
    tune_sweep(req, echo=click.echo, warn=_echo_err, show_progress=interactive())


@main.command(name="list")
@click.argument("what", type=click.Choice(["methods", "datasets"]))
@click.argument("pattern", required=False, default="*")
@click.option("--verbose", "-v", is_flag=True, help="every parameter of each match (as `bench info`)")
@plugins_option
def list_(what: str, pattern: str, verbose: bool) -> None:
    """List registered methods (with what each variant fixes) or datasets, and where each comes from.

    PATTERN is a wildcard. The origin is `built-in`, `path FILE` (a user plugin folder) or
    `entry point MODULE:CLASS (DISTRIBUTION)`.
    """
    from bench.registry import dataset_classes, match, method_entries, origin_of

    if verbose:
        from bench.info import info as describe

        names = match(list(method_entries() if what == "methods" else dataset_classes()), pattern)
        for i, name in enumerate(names):
            click.echo("\n".join(([""] if i else []) + describe(name)))
        return

    if what == "methods":
        entries = method_entries()
        for name in match(list(entries), pattern):
            e = entries[name]
            fixed = ", ".join(f"{k}={v}" for k, v in e.fixed.items())
            click.echo(f"{name:28s} {e.description}" + (f"  [fixes {fixed}]" if fixed else "") + f"  ({e.origin})")
    else:
        classes = dataset_classes()
        for name in match(list(classes), pattern):
            click.echo(f"{name:28s} {classes[name].description}  ({origin_of('dataset', name)})")


@main.command()
@click.argument("name")
@plugins_option
def info(name: str) -> None:
    """Every parameter of a method (or dataset): type, default, range, help, presets, search space."""
    from bench.info import info as describe

    for line in describe(name):
        click.echo(line)


@main.command()
@results_option
@click.option("--host", type=TEXT, default="127.0.0.1", show_default=True,
              help="interface to bind; 0.0.0.0 exposes the UI (and your runs) to the network")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--tracking-uri", type=TEXT, default=None, metavar="URI", help="backend store (default the embedded one)")
@click.option("--wait", "wait_s", default=120.0, show_default=True, type=Number(False, 0.1, 86400.0),
              help="seconds to wait for the server to answer")
def ui(results: str | None, host: str, port: int, tracking_uri: str | None, wait_s: float) -> None:
    """Serve the MLflow UI (one worker) and print, per sweep, a link to its runs grouped by method."""
    from bench.ui import UiRequest, serve

    code = serve(UiRequest(results_root(results), host, port, tracking_uri, wait_s), echo=click.echo, warn=_echo_err)
    sys.exit(code)


def _add_subcommands() -> None:
    """`bench data` and `bench report` live in their own modules."""
    from bench.cli_data import data
    from bench.cli_report import report

    main.add_command(data)
    main.add_command(report)


_add_subcommands()
