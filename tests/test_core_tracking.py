"""MLflow tracking: an experiment per sweep, a parent run per invocation, a child run per spec."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_SYNTHETIC, write_sweep

from bench.records import iter_records
from bench.runner import Runner
from bench.sweep import load_sweep
from bench.tracking import MlflowTracker, default_uri, flatten


@pytest.fixture(scope="module")
def tracked(mlflow_results, tmp_path_factory):
    """A two-seed sweep of cca and label_regression, run once with the embedded MLflow store."""
    folder = tmp_path_factory.mktemp("tracked")
    path = write_sweep(folder, f"""
        name: tracked
        seeds: [0, 1]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: cca, params: {{dim: 4}}}}, label_regression]
    """)
    sweep = load_sweep(path)
    tracker = MlflowTracker(default_uri(mlflow_results), sweep.name, mlflow_results / "mlartifacts")
    Runner(sweep, mlflow_results, tracker=tracker, echo=lambda line: None).run()
    client = tracker.client
    exp = client.get_experiment_by_name("tracked")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return {"sweep": sweep, "client": client, "exp": exp, "parents": parents, "children": children,
            "records": iter_records(mlflow_results, ["tracked"]), "results": mlflow_results}


def test_the_embedded_store_lives_in_the_results_folder(tracked):
    assert (tracked["results"] / "mlflow.db").is_file()
    assert tracked["exp"].artifact_location.startswith((tracked["results"] / "mlartifacts").resolve().as_uri())


def test_one_experiment_named_after_the_sweep_holds_one_parent_run(tracked):
    assert tracked["exp"].name == "tracked"
    (parent,) = tracked["parents"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["bench.role"] == "invocation" and parent.data.tags["sweep"] == "tracked"


def test_each_spec_has_one_finished_child_run_under_the_parent(tracked):
    children = tracked["children"]
    assert len(children) == len(tracked["sweep"].specs) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {tracked["parents"][0].info.run_id}
    assert {c.info.status for c in children} == {"FINISHED"}
    assert sorted(c.data.tags["run_key"] for c in children) == sorted(s.key for s in tracked["sweep"].specs)


def test_child_runs_carry_method_dataset_seed_and_run_key_tags(tracked):
    by_key = {c.data.tags["run_key"]: c for c in tracked["children"]}
    for spec in tracked["sweep"].specs:
        tags = by_key[spec.key].data.tags
        assert (tags["method"], tags["dataset"], tags["seed"]) == (spec.method, "synthetic", str(spec.seed))
        assert tags["family"] == spec.family and tags["variant"] == "-"
        assert "git_commit" in tags


def test_child_runs_log_the_resolved_parameters_flattened(tracked):
    cca = next(c for c in tracked["children"] if c.data.tags["method"] == "cca" and c.data.tags["seed"] == "1")
    params = cca.data.params
    assert (params["params.dim"], params["params.reg"], params["params.power"]) == ("4", "0.01", "1.0")
    assert (params["seed"], params["method"], params["data.n"], params["split.val"]) == ("1", "cca", "240", "0.1")
    assert params["missing"] == "complete"


def test_child_runs_log_the_test_metrics_of_their_record(tracked):
    records = {r["key"]: r for r in tracked["records"]}
    for child in tracked["children"]:
        rec = records[child.data.tags["run_key"]]
        assert child.info.run_id == rec["mlflow_run_id"]
        for name in ("map_i2t", "map_t2i", "map_avg"):
            assert child.data.metrics[f"test_{name}"] == pytest.approx(rec["metrics"][name])
        assert "best_val_map" in child.data.metrics


def test_metrics_logged_by_a_method_during_fit_reach_its_child_run(tracked):
    records = {r["key"]: r for r in tracked["records"]}
    for child in (c for c in tracked["children"] if c.data.tags["method"] == "cca"):
        logged = records[child.data.tags["run_key"]]["history"][0]["top_correlation"]
        assert child.data.metrics["top_correlation"] == pytest.approx(logged)


def test_child_runs_hold_the_config_and_pr_curve_artifacts(tracked):
    client = tracked["client"]
    child = tracked["children"][0]
    names = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"config.json", "pr_curve.json", "pr_curve.png"} <= names
    local = client.download_artifacts(child.info.run_id, "config.json")
    with open(local) as fh:
        config = json.load(fh)
    assert config["key"] == child.data.tags["run_key"]
    png = client.download_artifacts(child.info.run_id, "pr_curve.png")
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_flatten_joins_nested_keys_with_dots():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
