"""Each run keeps a sample of its test embeddings and the diagnostics computed from it; `bench report
--diag` shows them beside mAP, as variant deltas and per label, with figures, from the records alone."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, registered, write_sweep

from bench.cli import main
from bench.diagnostics import modality_gap, per_label_ap
from bench.embeddings import load_embeddings
from bench.records import iter_records

SWEEP = f"""
    name: diag
    seeds: [0, 1, 2]
    datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
    methods:
      - {{name: pgnn_con, params: {{D: 16, epochs: 2, layers: 1, batch: 32}}}}
      - {{name: pgnn_con/no_gan, params: {{D: 16, epochs: 2, layers: 1, batch: 32}}}}
      - cca
"""


@pytest.fixture(scope="module")
def diag_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diag")
    results = folder / "results"
    res = CliRunner().invoke(main, ["run", str(write_sweep(folder, SWEEP)), "--results", str(results),
                                    "--embeddings-max", "30"])
    assert res.exit_code == 0, res.output
    return results


def test_a_run_keeps_a_seeded_sample_of_its_test_embeddings_and_the_diagnostics_of_that_file(diag_results):
    records = iter_records(diag_results, ["diag"])
    assert len(records) == 9
    samples = set()
    for rec in records:
        kept = rec["embeddings"]
        saved = load_embeddings(diag_results / kept["file"])
        assert kept["items"] == saved.n == 30 and kept["of"] == rec["n_test"] == 48
        samples.add(tuple(saved.indices))
        expected = modality_gap(saved.image, saved.text, seed=kept["sample_seed"])
        assert {f"diag/{k}": rec["diagnostics"][k] for k in ("probe_acc", "centroid_dist", "align", "uniform_img",
                                                               "uniform_txt")} == pytest.approx(expected)
        label_ap = per_label_ap(saved.image, saved.text, saved.labels)
        got = np.array([np.nan if v is None else v for v in rec["diagnostics"]["label_ap_i2t"]])
        np.testing.assert_allclose(got, label_ap.i2t, equal_nan=True)
        assert rec["diagnostics"]["label_names"] == [f"concept_{i:02d}" for i in range(6)]
    assert len(samples) == 1  # every method and seed saved the same items (one fixed split)


def test_no_embeddings_keeps_nothing(tmp_path):
    results = tmp_path / "results"
    res = CliRunner().invoke(main, ["run", str(write_sweep(tmp_path, SWEEP)), "--results", str(results),
                                    "--no-embeddings", "--no-mlflow", "--method", "cca"])
    assert res.exit_code == 0, res.output
    assert all("embeddings" not in r and "diagnostics" not in r for r in iter_records(results, ["diag"]))
    assert not (results / "diag" / "embeddings").exists()


def test_the_diagnostics_are_logged_to_mlflow_with_the_embeddings_as_an_artifact(diag_results):
    from mlflow.tracking import MlflowClient

    from bench.store import default_uri

    rec = next(r for r in iter_records(diag_results, ["diag"]) if r["spec"]["method"] == "cca")
    client = MlflowClient(tracking_uri=default_uri(diag_results))
    run = client.get_run(rec["mlflow_run_id"])
    assert run.data.metrics["diag/probe_acc"] == pytest.approx(rec["diagnostics"]["probe_acc"])
    assert [a.path for a in client.list_artifacts(rec["mlflow_run_id"], "embeddings")] == \
        [f"embeddings/{rec['key']}.npz"]


def _table(text: str, title: str) -> list[list[str]]:
    lines = text.split(f"### {title}")[1].split("\n\n")
    rows = next(block for block in lines if block.startswith("|")).splitlines()[2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_report_diag_shows_the_records_diagnostics_their_variant_deltas_and_per_label_ap(diag_results):
    res = CliRunner().invoke(main, ["report", "diag", "--results", str(diag_results), "--diag"])
    assert res.exit_code == 0, res.output
    records = iter_records(diag_results, ["diag"])
    by = {}
    for rec in records:
        by.setdefault(rec["spec"]["method_label"], {})[rec["spec"]["seed"]] = rec["diagnostics"]
    gap = {row[1]: row for row in _table(res.output, "diag: modality gap\n")}
    for method, seeds in by.items():
        probe = np.mean([d["probe_acc"] for d in seeds.values()])
        assert gap[method][3].startswith(f"{probe:.4f}".replace("-", "−"))
    delta = {row[0]: row for row in _table(res.output, "diag: modality gap, variants − full model")}
    d_centroid = np.mean([by["pgnn_con/no_gan"][s]["centroid_dist"] - by["pgnn_con"][s]["centroid_dist"]
                          for s in range(3)])
    assert delta["pgnn_con/no_gan"][3].rstrip("*") == f"{d_centroid:+.4f}".replace("-", "−")
    labels = {row[0]: row for row in _table(res.output, "diag: per label, synthetic")}
    def label_ap(method, i):
        return np.mean([(d["label_ap_i2t"][i] + d["label_ap_t2i"][i]) / 2 for d in by[method].values()])
    assert labels["concept_03"][2].startswith(f"{label_ap('pgnn_con', 3):.4f}")


def test_report_diag_figures_draw_labels_and_tsne_and_a_gallery_only_with_previews(diag_results, tmp_path):
    figs = tmp_path / "figs"
    res = CliRunner().invoke(main, ["report", "diag", "--results", str(diag_results), "--diag", "--figures",
                                    str(figs)])
    assert res.exit_code == 0, res.output
    names = {p.name for p in figs.iterdir()}
    assert {"labels_diag__synthetic.png", "tsne_diag__synthetic__pgnn_con.png",
            "label_delta_diag__synthetic__pgnn_con.png"} <= names
    assert not any(n.startswith("gallery") for n in names)  # synthetic data has no preview
    html = CliRunner().invoke(main, ["report", "diag", "--results", str(diag_results), "--diag", "--format",
                                     "html"]).output
    assert "t-SNE of the common space" in html and "modality gap" in html


def test_a_report_of_runs_without_embeddings_says_so_under_diag(tmp_path):
    results = tmp_path / "results"
    CliRunner().invoke(main, ["run", str(write_sweep(tmp_path, SWEEP)), "--results", str(results),
                              "--no-embeddings", "--no-mlflow", "--method", "cca"])
    out = CliRunner().invoke(main, ["report", "diag", "--results", str(results), "--diag"]).output
    assert "no run of this sweep kept its embeddings" in out


def test_a_dataset_with_previews_gets_a_retrieval_gallery_in_both_directions(tmp_path):
    from PIL import Image

    from bench.registry import get_dataset

    thumbs = tmp_path / "thumbs"
    thumbs.mkdir()

    class Previewed(get_dataset("synthetic")):
        name = "coretest_previewed"
        description = "test-only: synthetic data whose items have pictures"

        def preview(self, i):
            path = thumbs / f"{i}.png"
            if not path.exists():
                Image.new("RGB", (24, 24), (40 * (i % 6), 90, 160)).save(path)
            return {"image": str(path), "text": f"item {i}"}

    path = write_sweep(tmp_path, SWEEP.replace("name: synthetic", "name: coretest_previewed").replace(
        "- cca", "- {name: pgnn_con/no_con, params: {D: 16, epochs: 2, layers: 1, batch: 32}}"))
    results, figs = tmp_path / "results", tmp_path / "figs"
    with registered(Previewed):
        assert CliRunner().invoke(main, ["run", str(path), "--results", str(results), "--no-mlflow", "seeds=[0]",
                                         "--embeddings-max", "30"]).exit_code == 0
        res = CliRunner().invoke(main, ["report", "diag", "--results", str(results), "--diag", "--figures",
                                        str(figs)])
    assert res.exit_code == 0, res.output
    names = {p.name for p in figs.iterdir()}
    assert {"gallery_t2i_diag__coretest_previewed__pgnn_con.png",
            "gallery_i2t_diag__coretest_previewed__pgnn_con.png"} <= names
