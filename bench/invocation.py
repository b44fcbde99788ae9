"""One `bench run`: everything that happens once per invocation, around one loop over finished runs.

    RunRequest (from the CLI) -> checks (results folder, sweep, device, tracking URI) -> run states,
    computed once -> dry run, or: preflight -> sweep lock -> [cluster starting in the background |
    serial] -> MLflow store opened and reconciled -> `execute_sweep`: parent run, one task per
    pending spec on the executor, a progress line per finished run -> report on the parent run ->
    summary line and exit code.

Exit codes: 0 every run finished ok; 1 some runs failed (recorded with their reasons); 2 bad
input (raised as BenchError before anything is written); 130 interrupted (the runs finished so
far are recorded; rerunning the same command resumes).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cluster import ClusterInBackground, ClusterOptions, task_resources
from bench.embeddings import EMBEDDINGS_MAX
from bench.environment import commit_tags, git_commit
from bench.executors import DaskExecutor, SerialExecutor
from bench.method import resolve_device
from bench.plan import file_definition, invocation_fields, pending, print_dry_run, run_labels, run_states
from bench.preflight import (
    check_results_folder,
    dask_dir,
    keep_scratch_inside,
    preflight,
    sweep_lock,
)
from bench.records import clean_stale_temporaries, runs_dir
from bench.registry import user_plugin_roots
from bench.spec import RunSpec
from bench.store import check_uri, default_uri, open_tracker
from bench.sweep import MAX_RUNS, Sweep, load_sweep
from bench.tasks import DataCache, RunContext, run_task
from bench.threads import auto_threads, busy_note
from bench.tracking import NullTracker, RunLabels, SafeTracker, Tracker

Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunRequest:
    """What `bench run` was asked to do, parsed and typed."""

    sweep_file: str
    results: Path
    assignments: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    multirun: bool = False
    force: bool = False
    dry_run: bool = False
    device: str | None = None
    tracking_uri: str | None = None
    mlflow: bool = True
    threads: int | None = None
    max_runs: int = MAX_RUNS
    scale: ClusterOptions | None = None  # None: serial, in this process
    command: str = ""  # the command line as typed, stored on the parent run and in every record
    embeddings_max: int = EMBEDDINGS_MAX  # test embeddings kept per run for the diagnostics (0: none)


@dataclass
class SweepSummary:
    """Counts of what an invocation did."""

    total: int = 0
    done_before: int = 0
    unavailable: int = 0  # runs of datasets skipped as unavailable
    ok: int = 0
    failed: int = 0
    skipped_datasets: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every run is finished and ok, 1 when some failed."""
        return 1 if self.failed else 0


# --- shared by `bench run` and `bench tune` ---------------------------------------------------


def set_threads(threads: int | None) -> None:
    """torch's CPU threads in this process (None, `--threads auto`: the cores idle now, see bench.threads)."""
    import torch

    torch.set_num_threads(threads or auto_threads())


def tracking_uri(results: Path, uri: str | None, enabled: bool) -> str | None:
    """The tracking URI an invocation uses (the embedded store by default), checked; None when off."""
    if not enabled:
        return None
    if uri is not None:
        check_uri(uri)
        return uri
    check_uri(default_uri(results), created=True)  # a broken existing store is refused before the lock
    return default_uri(results)


@contextlib.contextmanager
def executor_for(scale: ClusterOptions | None, device: str, root: Path,
                 echo: Echo) -> Iterator[Callable[[], SerialExecutor | DaskExecutor]]:
    """A function returning the executor. With `scale`, the cluster starts now, in the background,
    while the caller opens the MLflow store; the function waits for it. It is stopped on exit."""
    if scale is None:
        yield SerialExecutor
        return
    starter = ClusterInBackground(scale, device, echo=echo, local_directory=dask_dir(root))
    try:
        def executor() -> DaskExecutor:
            client = starter.client()
            return DaskExecutor(client, task_resources(client, device))
        yield executor
    finally:
        starter.close()


# --- the loop -----------------------------------------------------------------------------------


class Progress:
    """Runs done / running / failed, one line per finished run (through a tqdm bar on a terminal)."""

    def __init__(self, total: int, echo: Echo, bar: bool = False) -> None:
        self.total, self.echo = total, echo
        self.done = self.failed = 0
        self.running: set[str] = set()
        self.lock = threading.Lock()
        self.bar = None
        if bar:
            from bench.progress import progress

            self.bar = progress(iter(()), total=total, desc="runs")

    def on_event(self, event: Any) -> None:
        """A worker's progress event, (timestamp, msg): a run started."""
        msg = event[1] if isinstance(event, tuple) else event
        if isinstance(msg, dict) and msg.get("event") == "start":
            with self.lock:
                self.running.add(msg["key"])

    def finished(self, key: str, ok: bool, line: str) -> None:
        """One run ended (ok, failed, or lost with its worker)."""
        with self.lock:
            self.running.discard(key)
            self.done += ok
            self.failed += not ok
            text = (f"[{self.done + self.failed}/{self.total} done, {len(self.running)} running, "
                    f"{self.failed} failed] {line}")
        if self.bar is not None and hasattr(self.bar, "write"):
            self.bar.update(1)
            self.bar.write(text)
        else:
            self.echo(text)

    def close(self) -> None:
        """Close the bar, if any."""
        if self.bar is not None and hasattr(self.bar, "close"):
            self.bar.close()


def _outcome_line(spec: RunSpec, out: dict[str, Any], in_process: bool) -> str:
    where = "" if in_process else f", worker {out['worker']}" + (", record already written" if out["reused"] else "")
    if out["status"] == "ok":
        m = out["metrics"]
        return (f"ok     {spec.describe()}: mAP i2t {m['map_i2t']:.4f} t2i {m['map_t2i']:.4f} "
                f"({out['total_s']:.1f}s{where})")
    return f"FAILED {spec.describe()}: {out['reason']}" + (f" ({where.lstrip(', ')})" if where else "")


def _record_outcome(summary: SweepSummary, progress: Progress, spec: RunSpec, value: Any,
                    error: BaseException | None, in_process: bool, echo: Echo) -> None:
    """Count one finished task and print its line (and a note when its best epoch was its last)."""
    if error is not None:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        summary.failed += 1
        summary.failures.append((spec.describe(), reason))
        progress.finished(spec.key, False, f"LOST   {spec.describe()}: {reason}; no record written, the next "
                                           "invocation redoes it")
        return
    ok = value["status"] == "ok"
    if ok:
        summary.ok += 1
    else:
        summary.failed += 1
        summary.failures.append((spec.describe(), value["reason"]))
    progress.finished(spec.key, ok, _outcome_line(spec, value, in_process))
    if ok and value.get("last_epoch") is not None and value.get("best_epoch") == value["last_epoch"]:
        echo(f"note: {spec.describe()}: the best validation epoch is the last one ({value['last_epoch']}); "
             "it may not have converged: more epochs could help")


def _say_what_is_done(sweep: Sweep, states: dict[str, tuple[str, str]], summary: SweepSummary, echo: Echo) -> None:
    """The skipped datasets and the runs already finished, one line each; counts them in `summary`."""
    summary.total, summary.skipped_datasets = len(sweep.specs), dict(sweep.skipped)
    for label, reason in sweep.skipped.items():
        echo(f"skipped dataset {label}: {reason}")
    summary.done_before = sum(state == "done" for state, _ in states.values())
    summary.unavailable = sum(state == "skip" for state, _ in states.values())
    if summary.done_before:
        echo(f"{summary.done_before} of {summary.total} runs already finished; skipping them (--force reruns)"
             + (f"; {summary.unavailable} more skipped with their unavailable datasets" if summary.unavailable
                else ""))


def execute_sweep(sweep: Sweep, results: Path, *, executor: SerialExecutor | DaskExecutor | None = None,
                  tracker: Tracker | None = None, force: bool = False, echo: Echo = print,
                  show_progress: bool = False, states: dict[str, tuple[str, str]] | None = None,
                  summary: SweepSummary | None = None, cache: DataCache | None = None,
                  threads: int | None = None, labels: dict[str, RunLabels] | None = None,
                  invocation: dict[str, Any] | None = None, embeddings_max: int = EMBEDDINGS_MAX) -> SweepSummary:
    """Run every pending spec of `sweep` on `executor` (serial by default); returns the summary.

    Opens the invocation's parent run (closed FINISHED, FAILED or KILLED), prints the skipped
    datasets, the runs already finished, and one line per finished run. `summary`, when given, is
    updated in place (so an interrupted caller can say what was recorded).
    """
    results = Path(results).resolve()
    executor = executor or SerialExecutor()
    tracker = tracker if isinstance(tracker, SafeTracker) else SafeTracker(tracker or NullTracker(), echo)
    states = states if states is not None else run_states(sweep, results, force)
    summary = summary if summary is not None else SweepSummary()
    _say_what_is_done(sweep, states, summary, echo)
    todo = pending(sweep, states)
    if not todo:
        return summary
    started = datetime.now(UTC).isoformat(timespec="microseconds")
    _start_parent(tracker, sweep, executor, invocation or {})
    ctx = RunContext(sweep=sweep.name, results=str(results), device=sweep.device, started=started, force=force,
                     positions={s.key: i for i, s in enumerate(sweep.specs)},
                     tracking_uri=getattr(tracker.inner, "uri", None) if tracker.enabled else None,
                     parent_run_id=tracker.parent_id, plugin_roots=user_plugin_roots(), threads=threads,
                     labels=labels if labels is not None else run_labels(sweep, None), invocation=invocation or {},
                     embeddings_max=embeddings_max)
    if not executor.in_process:
        echo(f"sweep {sweep.name}: {len(todo)} runs on {executor.workers} Dask worker(s)"
             + (f" with resources {executor.resources}" if executor.resources else ""))
    progress = Progress(len(todo), echo, bar=show_progress)
    if isinstance(executor, DaskExecutor):
        executor.on_event = progress.on_event
    status = "FAILED"
    by_key = {s.key: s for s in todo}
    try:
        outcomes = executor.map(run_task, ctx, todo, key=lambda s: f"bench-run-{sweep.name}-{s.key}-{started}",
                                tracker=tracker, cache=cache or DataCache(results / "cache"),
                                echo=None if show_progress else echo, show_progress=show_progress)
        for outcome in outcomes:
            spec = by_key[outcome.item.key]
            _record_outcome(summary, progress, spec, outcome.value, outcome.error, executor.in_process, echo)
        status = "FINISHED" if not summary.failed else "FAILED"
        orphans = 0 if executor.in_process else tracker.close_open_children("KILLED")
        if orphans:
            echo(f"marked {orphans} MLflow run(s) of workers lost after their record as KILLED")
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        progress.close()
        tracker.end_parent(status)
    return summary


def _start_parent(tracker: Tracker, sweep: Sweep, executor: SerialExecutor | DaskExecutor,
                  invocation: dict[str, Any]) -> None:
    """The invocation's parent run: tags (sweep, command line, overrides, commit), the sweep file as
    given and as resolved with the command line's overrides (the file the runs were made from)."""
    tags = {"sweep": sweep.name, "sweep_file": str(sweep.path), **commit_tags(git_commit()),
            "bench.role": "invocation"}
    if invocation.get("command"):
        tags["bench.command"] = invocation["command"][:5000]
    if sweep.assignments:
        tags["bench.overrides"] = " ".join(sweep.assignments)[:5000]
    if not executor.in_process:
        tags["bench.workers"] = str(executor.workers)
    tracker.start_parent(f"{sweep.name} {datetime.now(UTC):%Y-%m-%d %H:%M:%S}", tags)
    if not tracker.parent_id:
        return
    import yaml

    tracker.log_parent_artifact(Path(sweep.path))
    with tempfile.TemporaryDirectory() as tmp:
        resolved = Path(tmp) / "sweep.resolved.yaml"
        resolved.write_text(yaml.safe_dump(sweep.resolved, sort_keys=False, allow_unicode=True))
        tracker.log_parent_artifact(resolved)


# --- the invocation -----------------------------------------------------------------------------


def run_sweep(req: RunRequest, echo: Echo, warn: Echo, show_progress: bool = False) -> int:
    """Do what `req` asks; returns the exit code (bad input raises BenchError before anything is
    written). `echo` prints progress, `warn` prints to stderr."""
    root = Path(req.results)
    check_results_folder(root)
    keep_scratch_inside(root)
    if req.scale is None and req.threads:
        set_threads(req.threads)
    sweep = load_sweep(req.sweep_file, device=req.device, cache_root=root / "cache", assignments=req.assignments,
                       multirun=req.multirun, only_methods=req.methods, only_datasets=req.datasets,
                       max_runs=req.max_runs)
    states = run_states(sweep, root, req.force)
    if req.dry_run:
        print_dry_run(sweep, states, echo)
        return 0
    # everything that can be checked is checked before anything is written (exit 2 writes nothing)
    resolve_device(sweep.device)
    uri = tracking_uri(root, req.tracking_uri, req.mlflow)
    todo = pending(sweep, states)
    cache = DataCache(root / "cache")
    loaded = preflight(sweep, todo, root / "cache")
    if loaded is not None:
        cache.adopt(*loaded)
    out = root / sweep.name
    summary = SweepSummary(total=len(sweep.specs))
    note = busy_note() if req.scale is None and req.threads is None and todo else None
    if note:
        echo(note)  # information, not a warning: stderr stays for warnings and errors
    lock = sweep_lock(out, root, sweep.name)
    try:
        with executor_for(req.scale if todo else None, sweep.device, root, echo) as executor:
            removed = clean_stale_temporaries(runs_dir(root, sweep.name))
            if removed:
                echo(f"removed {removed} temporary file(s) left in {runs_dir(root, sweep.name)} by a killed write")
            inner = open_tracker(uri, root, sweep.name, sweep.description, echo=echo) if uri else NullTracker()
            tracker = SafeTracker(inner, echo)
            execute_sweep(sweep, root, executor=executor(), tracker=tracker, force=req.force, echo=echo,
                          show_progress=show_progress, states=states, summary=summary, cache=cache,
                          threads=req.threads, labels=run_labels(sweep, file_definition(req, sweep)),
                          invocation=invocation_fields(req, sweep), embeddings_max=req.embeddings_max)
            if tracker.parent_id:
                publish_to_parent(tracker, sweep, root, warn)
    except KeyboardInterrupt:
        warn(f"\ninterrupted: {summary.ok + summary.failed} run(s) of this invocation were recorded "
             f"({summary.ok} ok, {summary.failed} failed) in {out / 'runs'}; runs in progress were not recorded "
             "and will be redone; rerun the same command to resume")
        return 130
    finally:
        lock.release()
    ran = summary.ok + summary.failed
    echo(f"sweep {sweep.name}: {summary.total} runs; {ran} ran now ({summary.ok} ok, {summary.failed} failed), "
         f"{summary.done_before} already finished, {summary.unavailable} skipped; records in {out / 'runs'}")
    if summary.failed:
        warn(f"{summary.failed} run(s) failed; their reasons are in the records and above; rerunning the sweep "
             "retries them")
    return summary.exit_code


def publish_to_parent(tracker: Tracker, sweep: Sweep, root: Path, warn: Echo) -> None:
    """Attach the report (markdown and LaTeX) and its figures (PNG) to the invocation's
    parent run. Best effort: a report or upload problem is one warning line, never a failed sweep."""
    from bench.report import build, render
    from bench.report_figures import all_figures

    keys = {s.key for s in sweep.specs}
    try:
        rep = build(root, [sweep.name], keys)
        with tempfile.TemporaryDirectory() as tmp:
            for fmt, ext in (("markdown", "md"), ("latex", "tex")):
                path = Path(tmp) / f"report.{ext}"
                path.write_text(render(rep, fmt))
                tracker.log_parent_artifact(path)
            for fig in all_figures(root, Path(tmp) / "figures", [sweep.name], keys, formats=("png",)):
                tracker.log_parent_artifact(fig, "figures")
    except Exception as exc:  # noqa: BLE001 - the runs and their records are done; this is a convenience copy
        warn(f"warning: could not attach the report to the MLflow parent run: {exc}")


def exit_with(code: int) -> None:
    """sys.exit unless the code is 0 (click commands return normally on success)."""
    if code:
        sys.exit(code)
