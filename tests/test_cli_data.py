"""`bench data check` prints a summary or the problem with a non-zero exit; `prepare` builds the cache."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from scipy.io import savemat
from test_datasets_openclipart import make_tree

from bench.cli_data import data


def _layout_a(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 4)):
        lab = np.zeros((n, 24))
        lab[np.arange(n), np.arange(n) % 24] = 1
        savemat(folder / f"{split}_img.mat", {f"{split}_img": rng.normal(size=(n, 5))})
        savemat(folder / f"{split}_txt.mat", {f"{split}_txt": rng.normal(size=(n, 3))})
        savemat(folder / f"{split}_lab.mat", {f"{split}_lab": lab})
    return folder


def test_check_prints_rows_per_split_dims_and_embedding_source(tmp_path):
    folder = _layout_a(tmp_path / "mir")
    res = CliRunner().invoke(data, ["check", "mirflickr", "--root", str(folder), "--param", "label_embeddings=onehot",
                                    "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "12 items, image 5-d, text 3-d, 24 labels" in res.output
    assert "train 8, test 4" in res.output and "label embeddings: onehot" in res.output
    assert "warning: 16 labels have no item: food, indoor" in res.output
    assert "co-occurrence density" in res.output and "label frequencies: animals 2" in res.output


def test_check_of_a_broken_dataset_prints_the_problem_and_exits_non_zero(tmp_path):
    folder = _layout_a(tmp_path / "mir")
    (folder / "test_lab.mat").unlink()
    res = CliRunner().invoke(data, ["check", "mirflickr", "--root", str(folder)])
    assert res.exit_code == 2 and "lacks test_lab.mat" in res.output


def test_check_rejects_unknown_params_with_a_suggestion(tmp_path):
    res = CliRunner().invoke(data, ["check", "mfeat", "--param", "image_veiw=fou"])
    assert res.exit_code == 2 and "did you mean image_view" in res.output


def test_prepare_from_an_unpacked_tree_then_check(tmp_path):
    tree = make_tree(tmp_path / "tree")
    cache = str(tmp_path / "cache")
    res = CliRunner().invoke(data, ["prepare", "openclipart", "--from", str(tree), "--workers", "1",
                                    "--cache-dir", cache])
    assert res.exit_code == 0, res.output
    assert "prepared:" in res.output
    # progress as plain lines (CliRunner is not a terminal), then what stays on disk
    assert "  SVG metadata: 6/6 (100%)" in res.output and "  CNN features (cpu): 5/5 (100%)" in res.output
    assert f"kept on disk:\n  {tree}  " in res.output and "your unpacked tree" in res.output
    res = CliRunner().invoke(data, ["check", "openclipart", "--root", str(tree), "--param", "min_df=1",
                                    "--cache-dir", cache])
    assert res.exit_code == 0, res.output
    assert "openclipart: 4 items" in res.output and "items dropped for having no label: 1" in res.output


def test_prepare_of_a_dataset_without_preparation_says_so(tmp_path):
    res = CliRunner().invoke(data, ["prepare", "mfeat", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 2 and "needs no preparation" in res.output


def test_check_lists_every_broken_file_not_just_the_first(tmp_path):
    folder = _layout_a(tmp_path / "mir")
    (folder / "test_lab.mat").unlink()
    savemat(folder / "train_txt.mat", {"wrong": np.zeros((8, 3))})
    img = np.random.default_rng(0).normal(size=(4, 5))
    img[2, 2] = np.nan
    savemat(folder / "test_img.mat", {"test_img": img})
    res = CliRunner().invoke(data, ["check", "mirflickr", "--root", str(folder)])
    assert res.exit_code == 2
    assert "lacks test_lab.mat" in res.output
    assert "train_txt.mat: no key 'train_txt' (found: wrong)" in res.output
    assert "test_img.mat: key 'test_img' has 1 NaN/inf values (first in row 2)" in res.output


def test_prepare_rejects_a_bad_device_and_options_a_dataset_lacks(tmp_path):
    tree = make_tree(tmp_path / "tree")
    res = CliRunner().invoke(data, ["prepare", "openclipart", "--from", str(tree), "--device", "tpu9",
                                    "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 2 and "problem: device 'tpu9': not a torch device" in res.output
    assert not list((tmp_path / "cache").rglob("*.np[zy]"))  # nothing written
    res = CliRunner().invoke(data, ["prepare", "openclipart", "--from", str(tree), "--param", "image_features=vgg",
                                    "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 2 and "image_features" in res.output and "handcrafted" in res.output


def test_prepare_writes_where_bench_run_looks_under_bench_results(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "res"))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(data, ["prepare", "openclipart", "--from", str(tree), "--workers", "1",
                                    "--param", "image_features=handcrafted"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "res/cache/openclipart").glob("image-handcrafted-*.npz"))) == 1
    assert not (tmp_path / "results").exists()
