"""Unusable data files (issue 12): `bench data check` and `bench run` end with exit 2 and one-line
problems, never a traceback or a huge allocation: truncated v7.3 (HDF5) files, cell-array and
string labels, absurd class ids, no training rows, no labelled test rows."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_sweep
from scipy.io import savemat

from bench.cli import main


def layout_a(folder, n_train=8, n_test=4):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        lab = np.zeros((n, 24))
        lab[np.arange(n), np.arange(n) % 24] = 1
        savemat(folder / f"{split}_img.mat", {f"{split}_img": rng.normal(size=(n, 5))})
        savemat(folder / f"{split}_txt.mat", {f"{split}_txt": rng.normal(size=(n, 3))})
        savemat(folder / f"{split}_lab.mat", {f"{split}_lab": lab})
    return folder


def truncated_hdf5(folder):
    path = folder / "train_img.mat"
    with h5py.File(path, "w") as f:
        f.create_dataset("train_img", data=np.random.default_rng(0).normal(size=(5, 8)))  # v7.3 stores transposed
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def cell_labels(folder):
    cells = np.empty((8, 1), dtype=object)
    for i in range(8):
        cells[i, 0] = np.array([[1.0, 0.0]])
    savemat(folder / "train_lab.mat", {"train_lab": cells})


def string_labels(folder):
    savemat(folder / "train_lab.mat", {"train_lab": np.array(["ab"] * 8)})


def hdf5_cell_labels(folder):
    path = folder / "train_lab.mat"
    with h5py.File(path, "w") as f:
        f.create_dataset("train_lab", data=np.array([b"x"] * 8, dtype="S1").reshape(1, 8))


def absurd_class_ids(folder):
    for split, n in (("train", 8), ("test", 4)):
        (folder / f"{split}_lab.mat").unlink()
        ids = np.arange(1, n + 1).reshape(-1, 1).astype(np.float64)
        ids[0, 0] = 4e10  # one-hot of this would need hundreds of GiB
        savemat(folder / f"{split}_img_lab.mat", {f"{split}_img_lab": ids})


def no_training_rows(folder):
    savemat(folder / "train_img.mat", {"train_img": np.zeros((0, 5))})
    savemat(folder / "train_txt.mat", {"train_txt": np.zeros((0, 3))})
    savemat(folder / "train_lab.mat", {"train_lab": np.zeros((0, 24))})


def no_labelled_test_rows(folder):
    savemat(folder / "test_lab.mat", {"test_lab": np.zeros((4, 24))})


CASES = {"truncated v7.3 file": truncated_hdf5, "cell-array labels": cell_labels, "string labels": string_labels,
         "v7.3 string labels": hdf5_cell_labels, "absurd class ids": absurd_class_ids,
         "no training rows": no_training_rows, "no labelled test rows": no_labelled_test_rows}


@pytest.mark.parametrize("case", list(CASES))
def test_data_check_refuses_unusable_data_with_exit_2(tmp_path, case):
    folder = layout_a(tmp_path / "mir")
    CASES[case](folder)
    t0 = time.monotonic()
    res = CliRunner().invoke(main, ["data", "check", "mirflickr", "--root", str(folder),
                                    "--cache-dir", str(tmp_path / "cache")])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("problem: ") and len(line) <= 400 for line in lines), lines
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("case", ["truncated v7.3 file", "absurd class ids", "no labelled test rows"])
def test_run_refuses_unusable_data_before_anything_is_written(tmp_path, case):
    folder = layout_a(tmp_path / "mir")
    CASES[case](folder)
    sweep = write_sweep(tmp_path, f"""
        datasets: [{{name: mirflickr, params: {{root: "{folder}", label_embeddings: random}}}}]
        methods: [cca]
    """)
    results = tmp_path / "results"
    res = CliRunner().invoke(main, ["run", str(sweep), "--results", str(results)])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: ")
    assert not results.exists()


@pytest.mark.parametrize("damage", ["corrupt index", "truncated cache"])
def test_a_corrupt_openclipart_cache_is_a_one_line_problem(tmp_path, monkeypatch, damage):
    from test_datasets_openclipart import make_tree

    for var in ("BENCH_DATA_OPENCLIPART", "BENCH_DATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    tree = make_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    res = CliRunner().invoke(main, ["data", "prepare", "openclipart", "--from", str(tree), "--workers", "1",
                                    "--cache-dir", str(cache)])
    assert res.exit_code == 0, res.output
    folder = cache / "openclipart"
    if damage == "corrupt index":
        (folder / "latest.json").write_text('{"file": ')
    else:
        npzs = list(folder.glob("*.npz"))
        assert npzs
        for npz in npzs:
            npz.write_bytes(npz.read_bytes()[:300])
    res = CliRunner().invoke(main, ["data", "check", "openclipart", "--param", "min_df=1", "--cache-dir", str(cache)])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("problem: ") and len(lines[0]) <= 400
