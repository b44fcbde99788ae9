"""One `bench tune`: Optuna studies on the VALIDATION split, one per (dataset, method) of a sweep.

    TuneRequest -> checks (results folder, sweep, device, each method on it, storage, tracking URI)
    -> [cluster starting in the background | serial] -> MLflow store -> per study: the trials as
    shares on the executor (`bench.tasks.tune_task`), a line and an MLflow child run per trial, the
    best parameters written as JSON that a run sweep reuses with `params_from`.

The objective, storage and pruner are in `bench.study`; the test split is never touched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cluster import ClusterOptions
from bench.errors import BenchError
from bench.invocation import executor_for, set_threads, tracking_uri
from bench.method import resolve_device
from bench.preflight import check_results_folder, keep_scratch_inside, preflight
from bench.records import write_atomic
from bench.registry import get_method, user_plugin_roots
from bench.spec import RunSpec
from bench.store import open_tracker
from bench.study import (
    best_params_path,
    check_storage,
    fail_stale_trials,
    has_search_space,
    journal_path,
    make_pruner,
    sampler_seed,
    shares,
    storage_for,
    studies,
)
from bench.sweep import MAX_RUNS, Sweep, load_sweep
from bench.tasks import DataCache, TrialShare, TuneContext, tune_task
from bench.tracking import NullTracker, SafeTracker, Tracker, child_tags

Echo = Callable[[str], None]


@dataclass(frozen=True)
class TuneRequest:
    """What `bench tune` was asked to do, parsed and typed."""

    sweep_file: str
    results: Path
    trials: int = 20
    timeout: float | None = None
    storage: str | None = None
    assignments: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    multirun: bool = False
    device: str | None = None
    tracking_uri: str | None = None
    mlflow: bool = True
    threads: int | None = None
    max_runs: int = MAX_RUNS
    scale: ClusterOptions | None = None


def tune_sweep(req: TuneRequest, echo: Echo, warn: Echo, show_progress: bool = False) -> list[dict[str, Any]]:
    """Run (or continue) every study of the sweep; returns the saved best-parameter documents."""
    if req.trials < 1:
        raise BenchError("--trials must be at least 1")
    if req.timeout is not None and not (math.isfinite(req.timeout) and req.timeout > 0):
        raise BenchError(f"--timeout must be a positive number of seconds, got {req.timeout}")
    root = Path(req.results)
    check_results_folder(root)
    keep_scratch_inside(root)
    sweep = load_sweep(req.sweep_file, device=req.device, cache_root=root / "cache", assignments=req.assignments,
                       multirun=req.multirun, only_methods=req.methods, only_datasets=req.datasets,
                       max_runs=req.max_runs)
    resolve_device(sweep.device)
    preflight(sweep, [t for t in studies(sweep)], root / "cache")  # devices, data, splits, memory estimate
    check_storage(req.storage, root, sweep.name)
    uri = tracking_uri(root, req.tracking_uri, req.mlflow)
    if req.scale is None:
        set_threads(req.threads)
    elif req.storage is None and (req.scale.scheduler or req.scale.cluster_file):
        warn(f"note: the studies are a journal file under {root / sweep.name / 'tune'}; workers on other "
             "machines need that folder at the same path, or use --storage postgresql://...")
    with executor_for(req.scale, sweep.device, root, echo) as executor:
        inner = open_tracker(uri, root, sweep.name, sweep.description, echo=echo) if uri else NullTracker()
        tracker = SafeTracker(inner, echo)
        ctx = TuneContext(sweep=sweep.name, results=str(root.resolve()), device=sweep.device, storage=req.storage,
                          started=datetime.now(UTC).isoformat(timespec="microseconds"),
                          plugin_roots=user_plugin_roots(), threads=req.threads)
        saved = run_studies(sweep, root, req, executor(), tracker, ctx, echo, show_progress)
    if saved:
        where = req.storage or str(journal_path(root, sweep.name))
        echo(f"browse the studies: optuna-dashboard {where}   (pip install 'bench[dashboard]')")
    return saved


def run_studies(sweep: Sweep, results: Path, req: TuneRequest, executor: Any, tracker: Tracker, ctx: TuneContext,
                echo: Echo, show_progress: bool = False) -> list[dict[str, Any]]:
    """Every study of the sweep on `executor`; each writes its best-parameter file."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = storage_for(results, sweep.name, req.storage)
    cache = DataCache(results / "cache")
    saved = []
    for template in studies(sweep):
        what = f"{template.dataset_label} | {template.method}"
        if not has_search_space(get_method(template.method).cls):
            echo(f"skip {what}: it has no search space")
            continue
        name = f"{sweep.name}:{template.dataset_label}:{template.method}"
        study = optuna.create_study(study_name=name, storage=store, direction="maximize", load_if_exists=True,
                                    pruner=make_pruner())
        stale = fail_stale_trials(study)
        if stale:
            echo(f"{what}: marked {stale} trial(s) of a killed `bench tune` as FAIL")
        before = len(study.trials)
        callbacks = [_trial_line(echo, what)] + ([_trial_run(tracker, template)] if tracker.enabled else [])
        tracker.start_parent(f"study {template.method} · {template.dataset_label}",
                             {"bench.role": "study", "optuna.study": name, "method": template.method,
                              "dataset": template.dataset_label})
        status = "FAILED"
        try:
            _optimize(executor, ctx, template, study, before, req, callbacks, cache, show_progress)
            status = "FINISHED"
        finally:
            done = [t.value for t in study.trials if t.value is not None]
            if done:
                tracker.log_metrics(tracker.parent_id, {"val/best_map": max(done)})
            tracker.end_parent(status)
        saved.append(_save_best(study, before, template, sweep, results, echo))
    return saved


def _optimize(executor: Any, ctx: TuneContext, template: RunSpec, study: Any, before: int, req: TuneRequest,
              callbacks: list, cache: DataCache, show_progress: bool) -> None:
    """Add `req.trials` trials to `study`: in this process with live callbacks, or as one share per
    worker (callbacks then run here once the workers are done)."""
    parts = shares(req.trials, executor.workers)
    items = [TrialShare(template, study.study_name, n, sampler_seed(template.seed, before, i), req.timeout)
             for i, n in enumerate(parts)]
    outcomes = executor.map(tune_task, ctx, items, key=lambda s: f"bench-tune-{s.study_name}-{before}-{s.seed}",
                            callbacks=tuple(callbacks), show_progress=show_progress, cache=cache)
    errors = [o.error for o in outcomes if o.error is not None]
    if not executor.in_process:
        for trial in study.trials[before:]:  # the workers' trials, reported from here
            for callback in callbacks:
                callback(study, trial)
    if errors:
        raise errors[0]


def _save_best(study: Any, before: int, template: RunSpec, sweep: Sweep, results: Path, echo: Echo) -> dict[str, Any]:
    """Write the best parameters of a study (raises when no trial completed)."""
    import optuna

    entry = get_method(template.method)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise BenchError(f"study {study.study_name}: no trial completed; see the failures above")
    best = study.best_trial
    doc = {"study": study.study_name, "dataset": template.dataset_label, "method": template.method,
           "value": best.value, "trial": best.number, "trials": len(study.trials),
           "params": {k: v for k, v in best.params.items() if k not in entry.fixed},
           "objective": "validation mAP (mean of I->T and T->I), best epoch"}
    path = best_params_path(results, sweep.name, template.dataset_label, template.method)
    write_atomic(path, json.dumps(doc, indent=1))
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials[before:])
    echo(f"{template.dataset_label} | {template.method}: {len(study.trials) - before} trials "
         f"({pruned} pruned); best validation mAP {best.value:.4f} with {doc['params']} -> {path}")
    return doc


def _trial_line(echo: Echo, what: str) -> Callable[[Any, Any], None]:
    """An Optuna callback printing one line per finished trial: state, value, best so far, params."""

    def line(study: Any, trial: Any) -> None:
        import optuna

        state = trial.state.name.lower()
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:  # no completed trial yet
            best = "-"
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        epoch = trial.last_step if trial.state == optuna.trial.TrialState.PRUNED else None
        at = f" at epoch {epoch}" if epoch is not None else ""
        echo(f"{what}: trial {trial.number} {state}{at} val mAP {value} (best {best}) {params}")

    return line


def _trial_run(tracker: Tracker, template: RunSpec) -> Callable[[Any, Any], None]:
    """An Optuna callback logging each finished trial as an MLflow child run of the study's run
    (the tracker is a SafeTracker: a tracking failure is a warning, never a stopped study)."""

    def log(study: Any, trial: Any) -> None:
        tags = {**child_tags(template, ""), "bench.role": "trial", "optuna.trial": str(trial.number),
                "optuna.state": trial.state.name.lower(), "optuna.study": study.study_name}
        tags.pop("git_commit", None)
        tags.pop("git_dirty", None)
        run_id = tracker.start_child(f"trial {trial.number} · {template.method_label} · {template.dataset_label}",
                                     {**trial.params, "bench.seed": template.seed}, tags)
        for epoch, value in sorted(trial.intermediate_values.items()):
            tracker.log_metrics(run_id, {"val/map": value}, step=epoch)
        if trial.value is not None:
            tracker.log_metrics(run_id, {"val/best_map": trial.value})
        tracker.end_child(run_id, "FAILED" if trial.state.name == "FAIL" else "FINISHED")

    return log
