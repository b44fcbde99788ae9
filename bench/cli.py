"""The `bench` command line: run, report, list, ui, data."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from bench.errors import BenchError


def results_root(value: str | None) -> Path:
    """--results, else $BENCH_RESULTS, else ./results."""
    return Path(value or os.environ.get("BENCH_RESULTS", "results"))


def keep_scratch_inside(root: Path) -> None:
    """Scratch folders of libraries go under <results>/cache instead of the system's temporary folder:
    torch's compile cache (created as soon as torch._dynamo is imported, which the first optimizer
    step does) unless TORCHINDUCTOR_CACHE_DIR says otherwise. Dask's goes there too (dask_dir)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str((root / "cache" / "torchinductor").resolve()))


def summary_line(cmd: click.Command) -> str:
    """A command's whole one-line summary (click would cut it at 45 characters)."""
    return (cmd.short_help or (cmd.help or "").strip().split("\n")[0]).strip()


MAX_MESSAGE = 390  # characters of an error message shown on its one line


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message on one line of at most `limit` characters; a long one loses its middle (the fix is at the end)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    tail = limit // 3
    return text[:limit - tail - 5] + " ... " + text[-tail:]


class Group(click.Group):
    """Turns user errors (BenchError) into one line on stderr and exit code 2; a full disk into one line, exit 1."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, each with its whole first docstring line."""
        rows = [(name, summary_line(cmd)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
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
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                click.echo(f"error: disk full{where}; free some space and rerun (finished records are intact, "
                           "the interrupted run is redone)", err=True)
                sys.exit(1)
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                             errno.ENAMETOOLONG, errno.ENOENT):
                click.echo(f"error: {one_line(exc.strerror or str(exc))}{where or ''}; check the path and its "
                           "permissions", err=True)
                sys.exit(2)
            raise


@click.group(cls=Group)
@click.version_option(package_name="bench")
def main() -> None:
    """Benchmark harness for multi-label cross-modal retrieval."""


threads_option = click.option("--threads", type=click.IntRange(min=1), default=None,
                              help="torch CPU threads (default: torch's choice; 1 when sharing a small machine)")


def set_threads(threads: int | None) -> None:
    """Apply --threads."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def _request_plugins(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    if value:
        from bench.registry import request_plugins

        request_plugins(value, "--plugins")


plugins_option = click.option("--plugins", multiple=True, metavar="DIR", expose_value=False, callback=_request_plugins,
                              help="a plugin folder (holding methods/ and/or datasets/) to import; repeatable")


def scale_options(func):
    """--workers / --scheduler / --cluster: run on Dask (see README, Scale-out)."""
    func = click.option("--cluster", "cluster_file", default=None, metavar="FILE",
                        help="start workers on SLURM from a dask-jobqueue YAML file (needs bench[slurm])")(func)
    func = click.option("--scheduler", default=None, metavar="ADDRESS",
                        help="use a running Dask cluster (tcp://host:8786) instead of a local one")(func)
    func = click.option("--workers", type=click.IntRange(min=1), default=None,
                        help="run on a local Dask cluster of N worker processes (with --cluster: SLURM jobs)")(func)
    return func


def cluster_options(workers: int | None, threads: int | None, scheduler: str | None, cluster_file: str | None):
    """The scale-out options, or None for the in-process (serial) path."""
    from bench.distributed import ClusterOptions

    opts = ClusterOptions(workers=workers, threads=threads, scheduler=scheduler, cluster_file=cluster_file)
    opts.check()
    return opts if opts.wanted else None


results_option = click.option("--results", "results", default=None, metavar="DIR",
                              help="results folder (default $BENCH_RESULTS or ./results)")
max_runs_option = click.option("--max-runs", type=click.IntRange(min=1), default=None, metavar="N",
                               help="refuse sweeps of more than N runs (default 10000)")


def check_results_folder(root: Path) -> None:
    """The results folder must be a folder (or not exist yet) whose path works; nothing is created here."""
    if "\x00" in str(root):
        raise BenchError("--results: the path contains a NUL character")
    if root.exists() and not root.is_dir():
        raise BenchError(f"--results: {root} is a file, not a folder; pass a folder (it is created if absent)")
    parent = next((p for p in [root, *root.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise BenchError(f"--results: {parent} is a file, so {root} cannot be created; pass another folder")


def sweep_lock(out: Path, root: Path, sweep: str) -> Any:
    """The per-sweep lock (acquired); a second invocation of the same sweep is refused."""
    from filelock import FileLock, Timeout

    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BenchError(f"another `bench run` is already running sweep '{sweep}' in {root} "
                         f"(lock {out / '.lock'}); wait for it or use another --results folder") from None
    return lock


def selection_options(f):
    """Overrides (KEY=VALUE arguments), --method / --dataset filters and --multirun."""
    f = click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")(f)
    f = click.option("--method", "-s", "methods", multiple=True, metavar="PATTERN",
                     help="run only methods whose name or label matches (wildcards; repeatable)")(f)
    f = click.option("--dataset", "-d", "datasets", multiple=True, metavar="PATTERN",
                     help="run only datasets whose name or label matches (wildcards; repeatable)")(f)
    return click.option("--multirun", "-m", is_flag=True,
                        help="comma-separated override values sweep (a grid for method parameters)")(f)


@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@selection_options
@results_option
@click.option("--force", is_flag=True, help="rerun runs that already finished")
@click.option("--dry-run", is_flag=True, help="list the runs (and whether each is done) without running")
@click.option("--device", default=None, help="override the sweep's device: auto, cpu, cuda, cuda:N")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="MLflow tracking URI (default sqlite:///<results>/mlflow.db)")
@click.option("--no-mlflow", is_flag=True, help="do not log to MLflow (records are still written)")
@threads_option
@plugins_option
@max_runs_option
@scale_options
def run(sweep_file: str, overrides: tuple[str, ...], methods: tuple[str, ...], datasets: tuple[str, ...],
        multirun: bool, results: str | None, force: bool, dry_run: bool, device: str | None,
        tracking_uri: str | None, no_mlflow: bool, threads: int | None, max_runs: int | None,
        workers: int | None, scheduler: str | None, cluster_file: str | None) -> None:
    """Train and evaluate every (dataset, method, params, seed) of SWEEP_FILE; resumable.

    KEY=VALUE arguments override the file (seeds=[0] methods.pgnn_con.epochs=5
    datasets.synthetic.n=500); see "Command-line overrides" in the README. --workers N runs them
    on N local Dask worker processes (see "Scale-out" in the README).
    """
    scale = cluster_options(workers, threads, scheduler, cluster_file)
    if scale is None:
        set_threads(threads)
    from bench.progress import interactive
    from bench.runner import Runner
    from bench.sweep import load_sweep

    root = results_root(results)
    check_results_folder(root)
    keep_scratch_inside(root)
    sweep = load_sweep(sweep_file, device=device, cache_root=root / "cache", overrides=overrides,
                       multirun=multirun, only_methods=methods, only_datasets=datasets, **_max(max_runs))
    if dry_run:
        dry_run_listing(sweep, Runner(sweep, root, force=force))
        return
    # everything that can be checked is checked before anything is written (exit 2 writes nothing)
    from bench.method import resolve_device
    from bench.runner import preflight

    resolve_device(sweep.device)
    uri = None
    if not no_mlflow:
        from bench.tracking import check_uri, default_uri

        uri = tracking_uri or default_uri(root)
        if tracking_uri is not None:
            check_uri(uri)
    runner = Runner(sweep, root, force=force, show_progress=interactive(), echo=click.echo)
    loaded: dict[str, Any] = {}
    preflight(sweep, runner.pending(), root / "cache", loaded)
    runner.adopt(loaded)
    out = root / sweep.name
    lock = sweep_lock(out, root, sweep.name)
    starter = None
    try:
        if scale is not None and not runner.pending():
            scale = None  # nothing to run: no cluster to start (the serial runner reports the skips)
        if scale is not None:  # workers start while the MLflow store is opened and reconciled
            from bench.distributed import ClusterInBackground

            starter = ClusterInBackground(scale, sweep.device, echo=click.echo, local_directory=dask_dir(root))
        from bench.records import clean_stale_temporaries, runs_dir

        removed = clean_stale_temporaries(runs_dir(root, sweep.name))
        if removed:
            click.echo(f"removed {removed} temporary file(s) left in {runs_dir(root, sweep.name)} by a killed write")
        tracker = None
        if uri is not None:
            tracker = open_tracker(uri, root, sweep.name, sweep.description)
            runner.use_tracker(tracker)
        if starter is None:
            try:
                summary = runner.run()
            except KeyboardInterrupt:
                done = runner.summary
                click.echo(f"\ninterrupted: {done.ok + done.failed} run(s) of this invocation were recorded "
                           f"({done.ok} ok, {done.failed} failed) in {out / 'runs'}; the run in progress was not "
                           f"recorded and will be redone; rerun the same command to resume", err=True)
                sys.exit(130)
        else:
            from bench.distributed import run_distributed

            try:
                with starter:
                    summary = run_distributed(sweep, root, starter.client(),
                                              tracker=runner.tracker if tracker else None,
                                              tracking_uri=uri if tracker else None,
                                              force=force, threads=threads or 1, echo=click.echo)
            except KeyboardInterrupt:
                click.echo(f"\ninterrupted: the runs finished so far are recorded in {out / 'runs'}; runs in "
                           "progress were not recorded and will be redone; rerun the same command to resume",
                           err=True)
                sys.exit(130)
        if tracker is not None and tracker.parent_id:
            publish_to_parent(tracker, sweep, root)
    finally:
        if starter is not None:
            starter.close()
        lock.release()
    ran = summary.ok + summary.failed
    skipped = sum(1 for s in sweep.specs if s.dataset_label in summary.skipped_datasets)
    click.echo(f"sweep {sweep.name}: {summary.total} runs; {ran} ran now ({summary.ok} ok, {summary.failed} failed), "
               f"{summary.done_before} already finished, {skipped} skipped; records in {out / 'runs'}")
    if summary.failed:
        click.echo(f"{summary.failed} run(s) failed; their reasons are in the records and above; "
                   "rerunning the sweep retries them", err=True)
        sys.exit(1)


def publish_to_parent(tracker, sweep, root: Path) -> None:  # noqa: ANN001
    """Attach the sweep file, the report (markdown and LaTeX) and its figures to the invocation's
    parent run. Best effort: a report or upload problem is one warning line, never a failed sweep."""
    import tempfile

    from bench.report import build, render
    from bench.report_figures import all_figures

    keys = {s.key for s in sweep.specs}
    try:
        tracker.log_parent_artifact(Path(sweep.path))
        rep = build(root, [sweep.name], keys)
        with tempfile.TemporaryDirectory() as tmp:
            for fmt, ext in (("markdown", "md"), ("latex", "tex")):
                path = Path(tmp) / f"report.{ext}"
                path.write_text(render(rep, fmt))
                tracker.log_parent_artifact(path)
            for fig in all_figures(root, Path(tmp) / "figures", [sweep.name], keys, formats=("png",)):
                tracker.log_parent_artifact(fig, "figures")
    except Exception as exc:  # the runs and their records are done; this is only a convenience copy
        click.echo(f"warning: could not attach the report to the MLflow parent run: {exc}", err=True)


def _max(max_runs: int | None) -> dict[str, int]:
    return {} if max_runs is None else {"max_runs": max_runs}


def open_tracker(uri: str, root: Path, sweep: str, description: str = "") -> Any:
    """The MLflow tracker of a sweep: store created or checked, then reconciled with the records."""
    from bench.tracking import MlflowTracker, prepare_store, reconcile

    prepare_store(uri, root, echo=click.echo)
    tracker = MlflowTracker(uri, sweep, root.resolve() / "mlartifacts")
    try:
        tracker.describe_experiment(description)
    except Exception as exc:  # noqa: BLE001 - a description is tracking: it never stops the sweep
        click.echo(f"warning: could not describe the MLflow experiment ({type(exc).__name__})")
    try:
        counts = reconcile(tracker, root, sweep)
    except Exception as exc:  # noqa: BLE001 - reconciliation is tracking: it never stops the sweep
        click.echo(f"warning: could not reconcile MLflow with the records ({type(exc).__name__}: "
                   f"{one_line(str(exc), 200)})")
        return tracker
    if counts["closed_from_record"]:
        click.echo(f"closed {counts['closed_from_record']} MLflow run(s) from their records "
                   "(an interrupted invocation had written the record but not closed the run)")
    if counts["killed"]:
        click.echo(f"marked {counts['killed']} MLflow run(s) of dead invocations as KILLED")
    return tracker


def dry_run_listing(sweep, runner) -> None:
    """Print each run's state (todo, retry, done, skipped and why) with its resolved parameters."""
    from bench.records import read_record, record_path

    counts = {"todo": 0, "retry": 0, "done": 0, "skip": 0}
    for spec in sweep.specs:
        params = " ".join(f"{k}={v}" for k, v in spec.params.items())
        if spec.dataset_label in sweep.skipped:
            state, why = "skip", f"  (dataset {spec.dataset_label}: {sweep.skipped[spec.dataset_label]})"
        else:
            rec = read_record(record_path(runner.results, sweep.name, spec.key))
            if rec is not None and rec.get("status") == "ok" and not runner.force:
                state, why = "done", ""
            elif rec is not None and rec.get("status") != "ok":
                state, why = "retry", f"  (failed before: {str(rec.get('reason', ''))[:120]})"
            else:
                state, why = "todo", "  (--force)" if rec is not None else ""
        counts[state] += 1
        click.echo(f"{state:5s} {spec.key}  {spec.describe()}{why}")
        if state != "skip":
            click.echo(f"      params: {params}")
    click.echo(f"{counts['todo'] + counts['retry']} of {len(sweep.specs)} runs to do ({counts['retry']} retried "
               f"after failing), {counts['done']} done, {counts['skip']} skipped (device {sweep.device}); "
               "nothing was run")


@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@selection_options
@results_option
@click.option("--trials", default=20, show_default=True, help="trials to add to each study")
@click.option("--timeout", default=None, type=float, help="stop each study after this many seconds")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage URL for many machines (default: a journal file under the results)")
@click.option("--device", default=None, help="override the sweep's device")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="MLflow tracking URI (default sqlite:///<results>/mlflow.db)")
@click.option("--no-mlflow", is_flag=True, help="do not log studies and trials to MLflow")
@threads_option
@plugins_option
@max_runs_option
@scale_options
def tune(sweep_file: str, overrides: tuple[str, ...], methods: tuple[str, ...], datasets: tuple[str, ...],
         multirun: bool, results: str | None, trials: int, timeout: float | None, storage: str | None,
         device: str | None, tracking_uri: str | None, no_mlflow: bool, threads: int | None,
         max_runs: int | None, workers: int | None, scheduler: str | None, cluster_file: str | None) -> None:
    """Optuna studies on the VALIDATION split, one per (dataset, method) of SWEEP_FILE.

    Best parameters are saved as JSON; reuse them in a run sweep with `params_from: PATH`.
    """
    import math

    from bench.method import resolve_device
    from bench.progress import interactive
    from bench.sweep import load_sweep
    from bench.tune import check_storage
    from bench.tune import tune as run_tune

    if trials < 1:
        raise BenchError("--trials must be at least 1")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise BenchError(f"--timeout must be a positive number of seconds, got {timeout}")
    scale = cluster_options(workers, threads, scheduler, cluster_file)
    root = results_root(results)
    check_results_folder(root)
    keep_scratch_inside(root)
    sweep = load_sweep(sweep_file, device=device, cache_root=root / "cache", overrides=overrides,
                       multirun=multirun, only_methods=methods, only_datasets=datasets, **_max(max_runs))
    resolve_device(sweep.device)
    from bench.runner import check_devices

    check_devices(sweep, sweep.specs)
    check_storage(storage, root, sweep.name)
    uri = None
    if not no_mlflow:
        from bench.tracking import check_uri, default_uri

        uri = tracking_uri or default_uri(root)
        if tracking_uri is not None:
            check_uri(uri)
    if scale is None:
        tracker = open_tracker(uri, root, sweep.name, sweep.description) if uri else None
        set_threads(threads)
        run_tune(sweep, root, trials, timeout=timeout, storage=storage, echo=click.echo,
                 show_progress=interactive(), tracker=tracker)
        return
    from bench.distributed import ClusterInBackground, TrialDispatcher

    if storage is None and (scheduler or cluster_file):
        click.echo(f"note: the studies are a journal file under {root / sweep.name / 'tune'}; workers on other "
                   "machines need that folder at the same path, or use --storage postgresql://...", err=True)
    with ClusterInBackground(scale, sweep.device, echo=click.echo, local_directory=dask_dir(root)) as starter:
        tracker = open_tracker(uri, root, sweep.name, sweep.description) if uri else None
        dispatcher = TrialDispatcher(starter.client(), sweep, root, storage, threads=threads or 1)
        run_tune(sweep, root, trials, timeout=timeout, storage=storage, echo=click.echo, tracker=tracker,
                 dispatcher=dispatcher)


def dask_dir(root: Path) -> Path:
    """Where local Dask workers keep their scratch space: inside the results folder."""
    return root / "cache" / "dask"


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
@click.option("--host", default="127.0.0.1", show_default=True,
              help="interface to bind; 0.0.0.0 exposes the UI (and your runs) to the network")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--tracking-uri", default=None, metavar="URI", help="backend store (default the embedded one)")
@click.option("--wait", "wait_s", default=120.0, show_default=True, help="seconds to wait for the server to answer")
def ui(results: str | None, host: str, port: int, tracking_uri: str | None, wait_s: float) -> None:
    """Serve the MLflow UI (one worker) and print, per sweep, a link to its runs grouped by method."""
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    from bench.tracking import default_uri, grouped_view

    root = results_root(results)
    uri = tracking_uri or default_uri(root)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise BenchError(f"no MLflow store at {uri}; run a sweep first or pass --tracking-uri")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BenchError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port") from None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    views = []
    for exp in client.search_experiments():
        if client.search_runs([exp.experiment_id], max_results=1):
            views.append((exp.name, exp.experiment_id, grouped_view(client, exp.experiment_id)))
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port),
           "--workers", "1"]
    proc = subprocess.Popen(cmd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # so `finally` stops the server
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    base = f"http://{shown}:{port}"
    deadline = time.monotonic() + wait_s
    try:
        while True:
            if proc.poll() is not None:
                raise BenchError(f"the MLflow server exited with code {proc.returncode} before answering; "
                                 f"its messages are above")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"the MLflow server did not answer on {base} within {wait_s:.0f} s; "
                                 "raise --wait on a loaded machine")
            time.sleep(0.5)
        click.echo(f"MLflow UI ready on {base} (Ctrl-C stops it)")
        for name, exp_id, key in views:
            click.echo(f"  {name}: {base}/#/experiments/{exp_id}/runs?viewStateShareKey={key}")
        if host in ("0.0.0.0", "::"):
            click.echo("  listening on every interface: anyone who reaches this port sees the runs", err=True)
        sys.stdout.flush()
        sys.exit(proc.wait())
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


try:  # the data commands live in their own module
    from bench.cli_data import data as _data_group
except ImportError:  # pragma: no cover - during development only
    _data_group = None
if _data_group is not None:
    main.add_command(_data_group)
from bench.cli_report import report as _report_command  # noqa: E402 - `bench report` lives in its own module

main.add_command(_report_command)
