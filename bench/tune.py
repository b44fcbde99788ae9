"""Hyperparameter tuning with Optuna on the validation split (the test split is never touched).

One study per (dataset entry, method) of a sweep file; the objective is the best validation
mAP of a run whose parameters are the sweep's plus the method's `search_space(trial)`;
per-epoch validation reports feed Optuna's pruner. Studies live in a journal file under
`<results>/<sweep>/tune/` (one machine) or any RDB URL (`--storage postgresql://...`, many
machines). The best parameters are written to JSON that a run sweep reuses with `params_from`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.method import resolve_device
from bench.records import write_atomic
from bench.registry import get_method
from bench.splits import SplitSpec, get_split
from bench.sweep import RunSpec, Sweep, resolve_params


def best_params_path(results: Path, sweep: str, dataset_label: str, method: str) -> Path:
    """Where the best parameters of a study are saved (always inside `<results>/<sweep>/tune/`)."""
    folder = Path(results) / sweep / "tune"
    path = folder / f"{dataset_label}__{method.replace('/', '--')}.json"
    if path.resolve().parent != folder.resolve():  # labels are checked at parse time; this is the backstop
        raise BenchError(f"dataset label {dataset_label!r} would write outside {folder}; rename it")
    return path


def journal_path(results: Path, sweep: str) -> Path:
    """The default Optuna journal of a sweep."""
    return Path(results) / sweep / "tune" / "optuna.journal"


STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


def check_storage(storage: str | None, results: Path, sweep: str) -> None:
    """Refuse an unusable storage URL or a corrupt journal before anything is written (BenchError)."""
    if storage is None:
        path = journal_path(results, sweep)
        if path.exists():
            _read_journal(path)
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    fix = "pass e.g. sqlite:////abs/path/optuna.db or postgresql://user@host/db, or leave --storage out"
    try:
        url = make_url(storage)
    except (ArgumentError, ValueError):
        raise BenchError(f"--storage {storage[:200]!r} is not a database URL; {fix}") from None
    if url.get_backend_name() not in STORAGE_SCHEMES:
        raise BenchError(f"--storage {storage[:200]!r}: unknown database '{url.get_backend_name()}'; {fix}")
    if url.get_backend_name() == "sqlite" and url.database:
        folder = Path(url.database).parent
        if not folder.is_dir():
            raise BenchError(f"--storage {storage[:200]!r}: folder {folder} does not exist; create it or {fix}")


def _read_journal(path: Path) -> None:
    """Every line of an Optuna journal must be a JSON object with an op_code (a torn last line is fine)."""
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise BenchError(f"{path}: cannot read the Optuna journal ({exc.strerror})") from None
    for i, line in enumerate(lines[:-1], 1):  # the part after the last newline may be a torn write
        try:
            op = json.loads(line)
        except ValueError:
            op = None
        if not isinstance(op, dict) or "op_code" not in op:
            raise BenchError(f"{path}: line {i} is not an Optuna journal entry (corrupt journal); move it aside "
                             f"(mv {path} {path}.bad) to start the studies afresh")


def storage_for(results: Path, sweep: str, storage: str | None) -> Any:
    """An Optuna storage: the given URL, else a journal file under the sweep's tune folder."""
    if storage:
        import optuna

        try:
            return optuna.storages.RDBStorage(storage, heartbeat_interval=60, grace_period=180)
        except Exception as exc:  # noqa: BLE001 - any failure to open it is the user's URL or server
            raise BenchError(f"--storage {storage[:200]!r} cannot be opened ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = journal_path(results, sweep)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def sampler_seed(base: int, trials_before: int, worker: int = 0) -> int:
    """The TPE sampler's seed for one invocation (or one worker) of a study.

    Seeding with the sweep seed alone made a second invocation replay the first one's trials and
    parallel workers duplicate each other. Mixing in how many trials the study already holds
    and the worker index gives every invocation and worker its own stream, while the same
    history and worker index still reproduce the same trials."""
    import numpy as np

    return int(np.random.SeedSequence([int(base), int(trials_before), int(worker)]).generate_state(1)[0])


def fail_stale_trials(study: Any) -> int:
    """Mark FAIL the RUNNING trials of `study` whose owner process is provably dead; returns how many.

    Each trial records its owner (host, pid, process start) as the user attribute `bench.owner`;
    a killed `bench tune` leaves its trial RUNNING for good otherwise. Live owners (another
    `bench tune` on the same study) and other hosts are left alone.
    """
    import optuna

    from bench.tracking import OWNER_TAG, owner_is_dead

    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if owner_is_dead(trial.user_attrs.get(OWNER_TAG)):
            try:
                study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            except Exception:  # noqa: BLE001 - another process may have just closed it
                continue
            failed += 1
    return failed


def studies(sweep: Sweep) -> list[RunSpec]:
    """One template spec per (dataset label, method) pair: the first seed and first grid point."""
    seen, out = set(), []
    for spec in sweep.specs:
        pair = (spec.dataset_label, spec.method)
        if pair not in seen and spec.dataset_label not in sweep.skipped:
            seen.add(pair)
            out.append(spec)
    return out


def make_objective(entry: Any, template: RunSpec, data: Any, split: Any, device: Any,
                   show_progress: bool = False) -> Callable[[Any], float]:
    """The Optuna objective: best validation mAP of a run with the trial's suggested parameters."""
    import optuna

    from bench.runner import execute
    from bench.tracking import OWNER_TAG, owner_tag

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(OWNER_TAG, owner_tag())  # lets a later `bench tune` fail it if this process dies
        suggested = entry.cls.search_space(trial)
        free = {k: v for k, v in suggested.items() if k not in entry.fixed}
        params = resolve_params(entry, template.dataset, {**template.params, **free}, f"tune {template.method}")
        spec = dataclasses.replace(template, params=params)

        def on_report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        out = execute(spec, data, split, device, on_report=on_report, evaluate_test=False,
                      show_progress=show_progress)
        trial.set_user_attr("best_epoch", out["best_epoch"])
        return float(out["val_map"])

    return objective


def _trial_line(echo: Callable[[str], None], what: str) -> Callable[[Any, Any], None]:
    """An Optuna callback printing one line per finished trial: state, value, best so far, params."""

    def line(study: Any, trial: Any) -> None:
        import optuna

        state = trial.state.name.lower()
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:  # no completed trial yet
            best = "-"
        params = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        epoch = trial.last_step if trial.state == optuna.trial.TrialState.PRUNED else None
        at = f" at epoch {epoch}" if epoch is not None else ""
        echo(f"{what}: trial {trial.number} {state}{at} val mAP {value} (best {best}) {params}")

    return line


def _trial_run(tracker: Any, template: RunSpec, echo: Callable[[str], None]) -> Callable[[Any, Any], None]:
    """An Optuna callback logging each finished trial as an MLflow child run of the study's run."""
    from bench.tracking import child_tags

    def log(study: Any, trial: Any) -> None:
        try:
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
        except Exception as exc:  # tracking never stops a study
            echo(f"warning: trial {trial.number} not logged to MLflow: {type(exc).__name__}: {exc}")

    return log


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def make_pruner() -> Any:
    """The pruner of every study (median of earlier trials at the same epoch, after warm-up)."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)


def tune(sweep: Sweep, results: Path, trials: int, timeout: float | None = None, storage: str | None = None,
         echo: Callable[[str], None] = print, show_progress: bool = False, worker: int = 0,
         tracker: Any = None, dispatcher: Any = None) -> list[dict[str, Any]]:
    """Run (or continue) every study of the sweep; returns the saved best-parameter documents.

    `worker` distinguishes processes optimising one study at once (their samplers differ).
    With a `tracker` (bench.tracking), each study invocation is an MLflow run and each trial a
    child run of it (parameters, validation mAP per epoch, state). With a `dispatcher`
    (bench.distributed.TrialDispatcher) the trials run on its Dask workers instead of in this
    process; trial lines and MLflow trial runs are then written here once the workers are done,
    and the best parameters file is written once per study, at the end, as in the serial case."""
    import optuna

    from bench.runner import load_dataset

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = resolve_device(sweep.device) if dispatcher is None else None  # workers pick their own
    store = storage_for(results, sweep.name, storage)
    saved = []
    for template in studies(sweep):
        entry = get_method(template.method)
        probe = optuna.trial.FixedTrial({})
        try:
            entry.cls.search_space(probe)
        except ValueError:
            pass  # FixedTrial without values raises once a parameter is suggested: it has a space
        else:
            echo(f"skip {template.dataset_label} | {template.method}: it has no search space")
            continue
        name = f"{sweep.name}:{template.dataset_label}:{template.method}"
        study = optuna.create_study(study_name=name, storage=store, direction="maximize", load_if_exists=True,
                                    pruner=make_pruner())
        stale = fail_stale_trials(study)
        if stale:
            echo(f"{template.dataset_label} | {template.method}: marked {stale} trial(s) of a killed `bench tune` "
                 "as FAIL")
        before = len(study.trials)
        what = f"{template.dataset_label} | {template.method}"
        callbacks = [_trial_line(echo, what)]
        if tracker is not None:
            tracker.start_parent(f"study {template.method} · {template.dataset_label}",
                                 {"bench.role": "study", "optuna.study": name, "method": template.method,
                                  "dataset": template.dataset_label})
            callbacks.append(_trial_run(tracker, template, echo))
        status = "FAILED"
        try:
            if dispatcher is not None:
                dispatcher.optimize(template, study, trials, timeout)
                for trial in study.trials[before:]:  # the workers' trials, reported from here
                    for callback in callbacks:
                        callback(study, trial)
            else:
                data = load_dataset(template, results / "cache")
                split = get_split(data, SplitSpec(**template.split), results / "cache")
                study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(template.seed, before, worker))
                objective = make_objective(entry, template, data, split, device, show_progress)
                study.optimize(objective, n_trials=trials, timeout=timeout, catch=(FloatingPointError, RuntimeError),
                               callbacks=callbacks)
            status = "FINISHED"
        finally:
            if tracker is not None:
                done = [t.value for t in study.trials if t.value is not None]
                if done:
                    tracker.log_metrics(tracker.parent_id, {"val/best_map": max(done)})
                tracker.end_parent(status)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            raise BenchError(f"study {name}: no trial completed; see the failures above")
        best = study.best_trial
        doc = {"study": name, "dataset": template.dataset_label, "method": template.method,
               "value": best.value, "trial": best.number, "trials": len(study.trials),
               "params": {k: v for k, v in best.params.items() if k not in entry.fixed},
               "objective": "validation mAP (mean of I->T and T->I), best epoch"}
        path = best_params_path(results, sweep.name, template.dataset_label, template.method)
        write_atomic(path, json.dumps(doc, indent=1))
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials[before:])
        echo(f"{template.dataset_label} | {template.method}: {len(study.trials) - before} trials "
             f"({pruned} pruned); best validation mAP {best.value:.4f} with {doc['params']} -> {path}")
        saved.append(doc)
    if saved:
        where = storage or str(Path(results) / sweep.name / "tune" / "optuna.journal")
        echo(f"browse the studies: optuna-dashboard {where}   (pip install 'bench[dashboard]')")
    return saved
