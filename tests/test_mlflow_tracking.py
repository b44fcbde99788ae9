"""MLflow tracking: an experiment per sweep, a parent run per invocation, a child run per spec."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_SYNTHETIC, write_sweep

from bench.invocation import execute_sweep
from bench.records import iter_records
from bench.store import default_uri
from bench.sweep import load_sweep
from bench.tracking import MlflowTracker, flatten


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
    execute_sweep(sweep, mlflow_results, tracker=tracker, echo=lambda line: None)
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
        assert tags["family"] == spec.family and tags["variant"] == "full"
        assert "git_commit" in tags and tags["git_dirty"] in ("true", "false")


def test_child_runs_log_the_resolved_parameters_flattened(tracked):
    cca = next(c for c in tracked["children"] if c.data.tags["method"] == "cca" and c.data.tags["seed"] == "1")
    params = cca.data.params
    assert (params["dim"], params["reg"], params["power"]) == ("4", "0.01", "1.0")  # method ones: plain
    assert (params["bench.seed"], params["bench.method"], params["bench.data.n"], params["bench.split.val"]) == (
        "1", "cca", "240", "0.1")
    assert params["bench.missing"] == "complete"


def test_child_runs_log_the_test_metrics_of_their_record(tracked):
    records = {r["key"]: r for r in tracked["records"]}
    for child in tracked["children"]:
        rec = records[child.data.tags["run_key"]]
        assert child.info.run_id == rec["mlflow_run_id"]
        for name in ("map_i2t", "map_t2i", "map_avg"):
            assert child.data.metrics[f"test/{name}"] == pytest.approx(rec["metrics"][name])
        assert child.data.metrics["test/p_at_10_i2t"] == pytest.approx(rec["metrics"]["p@10_i2t"])
        assert child.data.metrics["val/best_map"] == pytest.approx(rec["val_map"])
        assert child.data.metrics["cost/fit_s"] == pytest.approx(rec["timings"]["fit_s"])


def test_metrics_logged_by_a_method_during_fit_reach_its_child_run(tracked):
    records = {r["key"]: r for r in tracked["records"]}
    for child in (c for c in tracked["children"] if c.data.tags["method"] == "cca"):
        logged = records[child.data.tags["run_key"]]["history"][0]["top_correlation"]
        assert child.data.metrics["train/top_correlation"] == pytest.approx(logged)


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


def test_run_names_lead_with_method_then_dataset_then_seed(tracked):
    for child in tracked["children"]:
        tags = child.data.tags
        assert child.info.run_name == f"{tags['method_label']} · synthetic · s{tags['seed']}"


def test_each_child_records_its_dataset_and_split_digest_as_an_input(tracked):
    digests = set()
    for child in tracked["children"]:
        (inp,) = child.inputs.dataset_inputs
        assert inp.dataset.name == "synthetic" and len(inp.dataset.digest) >= 16
        assert json.loads(inp.dataset.profile)["test"] == 48  # 240 rows, test 0.2
        digests.add(inp.dataset.digest)
    assert len(digests) == 1  # same data and split for every run of the sweep


def test_epoch_metrics_are_sectioned_and_method_params_are_plain():
    from bench.tracking import child_params, epoch_metrics

    assert epoch_metrics({"val_map": 0.5, "loss": 1.0, "con": 0.2}) == {"val/map": 0.5, "train/loss": 1.0,
                                                                       "train/con": 0.2}
    assert child_params({"D": 8, "lr": 0.1}, {"seed": 0, "split": {"val": 0.1}}) == {
        "D": 8, "lr": 0.1, "bench.seed": 0, "bench.split.val": 0.1}


def test_a_failed_child_carries_its_reason_as_a_tag(mlflow_results, tmp_path, failing):
    path = write_sweep(tmp_path, f"""
        name: failtag
        seeds: [0, 1]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [coretest_failing]
    """)
    sweep = load_sweep(path)
    tracker = MlflowTracker(default_uri(mlflow_results), sweep.name, mlflow_results / "mlartifacts")
    execute_sweep(sweep, mlflow_results, tracker=tracker, echo=lambda line: None)
    exp = tracker.client.get_experiment_by_name("failtag")
    runs = {r.data.tags.get("seed"): r for r in tracker.client.search_runs([exp.experiment_id])
            if r.data.tags.get("bench.role") == "run"}
    assert runs["1"].info.status == "FAILED"
    assert runs["1"].data.tags["failure_reason"] == "ValueError: planted failure for seed 1"
    assert "failure_reason" not in runs["0"].data.tags


def test_cli_run_describes_the_experiment_and_attaches_sweep_report_and_figures_to_the_parent(tmp_path,
                                                                                            mlflow_results):
    from click.testing import CliRunner

    from bench.cli import main

    path = write_sweep(tmp_path, f"""
        name: parentart
        description: a tiny sweep whose parent run carries the report
        seeds: [0, 1]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: cca, params: {{dim: 4}}}}]
    """)
    results = tmp_path / "results"
    out = CliRunner().invoke(main, ["run", str(path), "--results", str(results),
                                    "--tracking-uri", default_uri(mlflow_results)])  # the session's store
    assert out.exit_code == 0, out.output
    tracker = MlflowTracker(default_uri(mlflow_results), "parentart")
    exp = tracker.client.get_experiment_by_name("parentart")
    assert exp.tags["mlflow.note.content"] == "a tiny sweep whose parent run carries the report"
    (parent,) = [r for r in tracker.client.search_runs([exp.experiment_id])
                 if r.data.tags.get("bench.role") == "invocation"]
    names = {a.path for a in tracker.client.list_artifacts(parent.info.run_id)}
    assert {"sweep.yaml", "report.md", "report.tex", "figures"} <= names
    figures = {a.path for a in tracker.client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/pr_parentart__synthetic.png" in figures
    assert not [f for f in figures if f.endswith(".pdf")]  # PNG only on the parent run (viewable, cheaper)
    report_md = tracker.client.download_artifacts(parent.info.run_id, "report.md", str(tmp_path))
    assert "### parentart" in open(report_md).read()


def test_a_dirty_working_tree_is_tagged_and_the_full_model_is_variant_full():
    from types import SimpleNamespace

    from bench.tracking import child_tags

    spec = SimpleNamespace(method="pgnn_con", family="pgnn_con", dataset_label="synthetic", seed=0, key="k",
                           method_label="pgnn_con")
    tags = child_tags(spec, "abc123-dirty")
    assert (tags["git_commit"], tags["git_dirty"], tags["variant"]) == ("abc123", "true", "full")
    spec.method = "pgnn_con/no_gan"
    assert child_tags(spec, "abc123")["git_dirty"] == "false" and child_tags(spec, "abc")["variant"] == "no_gan"


def test_outside_a_git_checkout_the_dirtiness_of_the_tree_is_unknown_not_false():
    from types import SimpleNamespace

    from bench.tracking import child_tags

    spec = SimpleNamespace(method="cca", family="cca", dataset_label="synthetic", seed=0, key="k", method_label="cca")
    tags = child_tags(spec, "")
    assert (tags["git_commit"], tags["git_dirty"]) == ("", "unknown")
