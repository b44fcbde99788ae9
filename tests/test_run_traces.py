"""What a run leaves behind says how it was made: the command line and its overrides in the record
and on the MLflow parent run, the configuration in the child run's name and grouping tags, and the
run's own peak memory."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, Projection, registered, write_sweep

from bench.cli import main
from bench.params import spec
from bench.records import iter_records
from bench.store import default_uri
from bench.ui import SHARED_VIEW_KEY, grouped_view, relabel


def _sweep(folder, name="traces", methods="[{name: cca, params: {dim: 6}}]"):
    return write_sweep(folder, f"""
        name: {name}
        seeds: [0, 1]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: {methods}
    """)


def _children(results, experiment):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=default_uri(results))
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return client, exp, runs


def test_records_and_the_parent_run_keep_the_command_line_and_the_resolved_sweep(tmp_path):
    results = tmp_path / "results"
    args = ["run", str(_sweep(tmp_path)), "--results", str(results), "methods.cca.dim=3", "--method", "cca"]
    assert CliRunner().invoke(main, args).exit_code == 0
    records = iter_records(results, ["traces"])
    assert len(records) == 2
    for rec in records:
        inv = rec["invocation"]
        assert inv["command"].startswith("bench run ") and "methods.cca.dim=3" in inv["command"]
        assert inv["overrides"] == ["methods.cca.dim=3"] and inv["methods"] == ["cca"]
        assert inv["resolved_sweep"]["methods"][0]["params"]["dim"] == 3  # the file says 6
    client, _, runs = _children(results, "traces")
    (parent,) = [r for r in runs if r.data.tags.get("bench.role") == "invocation"]
    assert "methods.cca.dim=3" in parent.data.tags["bench.command"]
    assert parent.data.tags["bench.overrides"] == "methods.cca.dim=3"
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep.yaml", "sweep.resolved.yaml"} <= names  # the file as given and as resolved
    local = client.download_artifacts(parent.info.run_id, "sweep.resolved.yaml", str(tmp_path))
    assert yaml.safe_load(open(local))["methods"][0]["params"]["dim"] == 3


def test_two_configurations_of_a_method_get_their_own_names_groups_and_labels(tmp_path):
    results = tmp_path / "results"
    path = _sweep(tmp_path)
    assert CliRunner().invoke(main, ["run", str(path), "--results", str(results)]).exit_code == 0
    assert CliRunner().invoke(main, ["run", str(path), "--results", str(results), "methods.cca.dim=2"]).exit_code == 0
    client, exp, runs = _children(results, "traces")
    children = [r for r in runs if r.data.tags.get("bench.role") == "run"]
    by_config = {}
    for run in children:
        by_config.setdefault(run.data.tags["config"], set()).add(run.info.run_name)
    assert by_config == {"cca": {"cca · synthetic · s0", "cca · synthetic · s1"},
                         "cca [dim=2]": {"cca [dim=2] · synthetic · s0", "cca [dim=2] · synthetic · s1"}}
    assert len({r.data.tags["config_id"] for r in children}) == 2
    # before serving, `bench ui` names every configuration as the report does, from all the records
    assert relabel(client, exp.experiment_id, results, "traces") == 2  # the runs of the file's own dim=6
    labels = {client.get_run(r.info.run_id).data.tags["config"] for r in children}
    assert labels == {"cca [dim=6]", "cca [dim=2]"}
    assert sorted(client.get_run(r.info.run_id).info.run_name for r in children)[0] == "cca [dim=2] · synthetic · s0"
    key = grouped_view(client, exp.experiment_id)
    view = json.loads(client.get_experiment(exp.experiment_id).tags[f"mlflow.sharedViewState.{key}"])
    assert [k["groupByData"] for k in view["groupBy"]["groupByKeys"]] == ["config", "dataset"]
    assert "attributes.status = 'FINISHED'" in view["searchFilter"]
    shown = client.search_runs([exp.experiment_id], filter_string=view["searchFilter"])
    client.set_terminated(children[0].info.run_id, "KILLED")  # what Ctrl-C leaves
    assert len(client.search_runs([exp.experiment_id], filter_string=view["searchFilter"])) == len(shown) - 1
    assert SHARED_VIEW_KEY == "bench-by-method"


@dataclass
class _HungryParams:
    mib: int = spec(0, help="MiB to hold during the fit", low=0)


class HungryMethod(Projection):
    """Holds `mib` MiB of memory during its fit."""

    name = "coretest_hungry"
    description = "test-only: allocates memory while fitting"
    Params = _HungryParams

    def fit(self, train, val, ctx):
        block = np.ones(self.params.mib * 2**17) if self.params.mib else None  # 2**17 float64 = 1 MiB
        self._project(train, ctx.seed)
        del block


@pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_each_record_holds_its_own_peak_memory_not_the_process_running_peak(tmp_path):
    results = tmp_path / "results"
    path = write_sweep(tmp_path, f"""
        name: hungry
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: coretest_hungry, label: big, params: {{mib: 300}}}},
                  {{name: coretest_hungry, label: small, params: {{mib: 0}}}}]
    """)
    res = CliRunner().invoke(main, ["run", str(path), "--results", str(results), "--no-mlflow"])
    assert res.exit_code == 0, res.output
    memory = {r["spec"]["method_label"]: r["memory"] for r in iter_records(results, ["hungry"])}
    assert memory["big"]["peak_scope"] == memory["small"]["peak_scope"] == "run"
    assert memory["big"]["peak_delta_mb"] > 250
    assert memory["small"]["peak_delta_mb"] < 100
    assert memory["small"]["peak_rss_mb"] < memory["big"]["peak_rss_mb"] - 200  # it ran after the big one


@pytest.fixture(scope="module", autouse=True)
def _test_plugins():
    """This module's test-only plugin, registered while its tests run."""
    with registered(HungryMethod):
        yield
