"""bench tune: Optuna on the validation split, best parameters saved and reusable with params_from."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, write_sweep

from bench.cli import main
from bench.method import resolve_device
from bench.registry import get_method
from bench.run import load_dataset
from bench.splits import SplitSpec, get_split
from bench.study import best_params_path, make_objective
from bench.sweep import load_sweep


def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_tune_saves_the_best_completed_trial_and_a_run_sweep_reuses_it(tmp_path):
    sweep = write_sweep(tmp_path, f"""
        name: tunetest
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [label_regression]
    """)
    results = tmp_path / "results"
    assert _invoke("tune", str(sweep), "--trials", "4", "--results", str(results), "--no-mlflow").exit_code == 0
    path = best_params_path(results, "tunetest", "synthetic", "label_regression")
    doc = json.loads(path.read_text())
    assert 1e-4 <= doc["params"]["lam"] <= 10.0  # inside the method's search space
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="tunetest:synthetic:label_regression", storage=JournalStorage(
        JournalFileBackend(str(results / "tunetest" / "tune" / "optuna.journal"))))
    values = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(values) == 4 and doc["value"] == max(values)
    assert doc["params"]["lam"] == study.best_trial.params["lam"]
    # tuning never writes run records: the test split stays untouched
    assert not (results / "tunetest" / "runs").exists()

    use = write_sweep(tmp_path, f"""
        name: usetuned
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: label_regression, params_from: "{path}"}}]
    """, name="use")
    spec = load_sweep(use).specs[0]
    assert spec.params["lam"] == doc["params"]["lam"] and spec.method_label == "label_regression (tuned)"


def test_a_second_invocation_adds_trials_to_the_same_study(tmp_path):
    sweep = write_sweep(tmp_path, f"""
        name: again
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [label_regression]
    """)
    results = tmp_path / "results"
    for _ in range(2):
        assert _invoke("tune", str(sweep), "--trials", "2", "--results", str(results), "--no-mlflow").exit_code == 0
    doc = json.loads(best_params_path(results, "again", "synthetic", "label_regression").read_text())
    assert doc["trials"] == 4


def _journal_trials(results, study_name):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=study_name, storage=JournalStorage(
        JournalFileBackend(str(results / study_name.split(":")[0] / "tune" / "optuna.journal"))))
    return [t.params for t in study.trials]


def test_a_second_invocation_adds_new_distinct_trials_and_stays_reproducible(tmp_path):
    sweep = write_sweep(tmp_path, f"""
        name: distinct
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [label_regression]
    """)
    runs = []
    for folder in ("a", "b"):
        results = tmp_path / folder
        for _ in range(2):
            assert _invoke("tune", str(sweep), "--trials", "2", "--results", str(results), "--no-mlflow").exit_code == 0
        runs.append(_journal_trials(results, "distinct:synthetic:label_regression"))
    lams = [p["lam"] for p in runs[0]]
    assert len(lams) == 4 and len(set(lams)) == 4  # the rerun did not replay the first two trials
    assert runs[0] == runs[1]  # the same history reproduces the same trials


def test_workers_on_one_study_get_distinct_sampler_seeds():
    from bench.study import sampler_seed

    seeds = {sampler_seed(0, before, worker) for before in (0, 5) for worker in (0, 1, 2)}
    assert len(seeds) == 6
    assert sampler_seed(0, 5, 1) == sampler_seed(0, 5, 1)


def test_tune_prints_one_line_per_trial(tmp_path):
    sweep = write_sweep(tmp_path, f"""
        name: lines
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [label_regression]
    """)
    result = _invoke("tune", str(sweep), "--trials", "3", "--results", str(tmp_path / "r"), "--no-mlflow")
    lines = [line for line in result.output.splitlines() if ": trial " in line]
    assert [line.split(": trial ")[1].split()[0] for line in lines] == ["0", "1", "2"]
    assert all("complete" in line and "lam=" in line and "(best 0." in line for line in lines)


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):  # noqa: D102
        return True


def test_per_epoch_validation_reports_reach_the_pruner(tmp_path):
    sweep = write_sweep(tmp_path, f"""
        name: prune
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: pgnn_con, params: {{D: 16, epochs: 3, layers: 2, batch: 64}}}}]
    """)
    template = load_sweep(sweep).specs[0]
    data = load_dataset(template, tmp_path / "cache")
    split = get_split(data, SplitSpec(**template.split), tmp_path / "cache")
    objective = make_objective(get_method("pgnn_con"), template, data, split, resolve_device("cpu"))
    study = optuna.create_study(direction="maximize", pruner=_AlwaysPrune())
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]  # pruned right after the first epoch's report


def test_tune_with_zero_trials_is_a_one_line_error(tmp_path):
    sweep = write_sweep(tmp_path, """
        datasets: [synthetic]
        methods: [cca]
    """)
    result = CliRunner().invoke(main, ["tune", str(sweep), "--trials", "0", "--results", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--trials" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_trials_are_mlflow_child_runs_of_the_study_run_and_the_dashboard_is_pointed_to(tmp_path, mlflow_results):
    from bench.store import default_uri
    from bench.tracking import MlflowTracker

    sweep = write_sweep(tmp_path, f"""
        name: tracked_tune
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [label_regression]
    """)
    results = tmp_path / "r"
    mlflow_results.mkdir(parents=True, exist_ok=True)  # an explicit sqlite URI must name an existing folder
    out = _invoke("tune", str(sweep), "--trials", "3", "--results", str(results),
                  "--tracking-uri", default_uri(mlflow_results))  # the session's store: created once
    assert out.exit_code == 0, out.output
    assert f"optuna-dashboard {results / 'tracked_tune' / 'tune' / 'optuna.journal'}" in out.output
    client = MlflowTracker(default_uri(mlflow_results), "tracked_tune").client
    exp = client.get_experiment_by_name("tracked_tune")
    runs = client.search_runs([exp.experiment_id])
    (study,) = [r for r in runs if r.data.tags.get("bench.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("bench.role") == "trial"]
    assert sorted(int(r.data.tags["optuna.trial"]) for r in trials) == [0, 1, 2]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {study.info.run_id}
    journal = _journal_trials(results, "tracked_tune:synthetic:label_regression")
    for r in trials:
        assert float(r.data.params["lam"]) == pytest.approx(journal[int(r.data.tags["optuna.trial"])]["lam"])
        assert "val/best_map" in r.data.metrics
    assert study.data.metrics["val/best_map"] == pytest.approx(max(r.data.metrics["val/best_map"] for r in trials))
