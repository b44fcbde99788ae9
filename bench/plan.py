"""What an invocation will do, worked out before it does it: the state of every run (one read per
record), the dry-run listing, the names each run carries in MLflow, and what every record stores
about the command that asked for it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from bench.errors import BenchError
from bench.records import read_record, record_path
from bench.report_configs import labels_against
from bench.spec import RunSpec
from bench.sweep import Sweep, load_sweep
from bench.tracking import RunLabels

Echo = Callable[[str], None]


class _Asked(Protocol):
    """The parts of a run request the plan reads."""

    sweep_file: str
    results: Path
    assignments: tuple[str, ...]
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    multirun: bool
    device: str | None
    max_runs: int
    command: str


# --- run states, computed once per invocation ------------------------------------------------


def run_states(sweep: Sweep, results: Path, force: bool) -> dict[str, tuple[str, str]]:
    """(state, why) per run key, each record read once: `todo`, `retry` (failed before), `done`
    (an ok record; `todo` again with --force) or `skip` (its optional dataset is absent)."""
    states = {}
    for spec in sweep.specs:
        if spec.dataset_label in sweep.skipped:
            states[spec.key] = ("skip", f"dataset {spec.dataset_label}: {sweep.skipped[spec.dataset_label]}")
            continue
        rec = read_record(record_path(results, sweep.name, spec.key))
        if rec is not None and rec.get("status") == "ok":
            states[spec.key] = ("todo", "--force") if force else ("done", "")
        elif rec is not None:
            states[spec.key] = ("retry", f"failed before: {str(rec.get('reason', ''))[:120]}")
        else:
            states[spec.key] = ("todo", "")
    return states


def pending(sweep: Sweep, states: dict[str, tuple[str, str]]) -> list[RunSpec]:
    """The specs to run now, in sweep order."""
    return [s for s in sweep.specs if states[s.key][0] in ("todo", "retry")]


def print_dry_run(sweep: Sweep, states: dict[str, tuple[str, str]], echo: Echo) -> None:
    """Each run's state (todo, retry, done, skipped and why) with its resolved parameters."""
    counts = {"todo": 0, "retry": 0, "done": 0, "skip": 0}
    for spec in sweep.specs:
        state, why = states[spec.key]
        counts[state] += 1
        echo(f"{state:5s} {spec.key}  {spec.describe()}" + (f"  ({why})" if why else ""))
        if state != "skip":
            echo("      params: " + " ".join(f"{k}={v}" for k, v in spec.params.items()))
    echo(f"{counts['todo'] + counts['retry']} of {len(sweep.specs)} runs to do ({counts['retry']} retried "
         f"after failing), {counts['done']} done, {counts['skip']} skipped (device {sweep.device}); nothing was run")


# --- what the runs of this invocation carry ----------------------------------------------------


def run_labels(sweep: Sweep, reference: Sweep | None) -> dict[str, RunLabels]:
    """Per run key, the names of its configuration as the report writes them: what differs from the
    sweep file's own definition (`reference`, the file without the command line's overrides)."""
    ref = {(s.dataset_label, s.method_label): dataclasses.asdict(s) for s in reference.specs} if reference else {}
    out = {}
    for spec in sweep.specs:
        config, dataset, ident = labels_against(dataclasses.asdict(spec),
                                                ref.get((spec.dataset_label, spec.method_label)) if ref else None)
        out[spec.key] = RunLabels(config, dataset, ident)
    return out


def file_definition(req: _Asked, sweep: Sweep) -> Sweep | None:
    """The sweep file without the command line's overrides (None when there were none, or when the
    file alone does not load: then nothing can be said to differ from it)."""
    if not (req.assignments or req.multirun):
        return None
    try:
        return load_sweep(req.sweep_file, device=req.device, cache_root=Path(req.results) / "cache",
                          max_runs=req.max_runs)
    except BenchError:
        return None


def invocation_fields(req: _Asked, sweep: Sweep) -> dict[str, Any]:
    """What every record of this invocation stores about how it was asked for."""
    return {"command": req.command, "sweep_file": str(sweep.path), "overrides": list(sweep.assignments),
            "multirun": req.multirun, "methods": list(req.methods), "datasets": list(req.datasets),
            "resolved_sweep": sweep.resolved}
