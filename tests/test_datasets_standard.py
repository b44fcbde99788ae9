"""Standard benchmark loaders (mirflickr, nuswide, mscoco): layouts A and B, v7.3 files, clear errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from bench.errors import DataError
from bench.registry import get_dataset

N_TR, N_TE, D_IMG, D_TXT, C = 12, 6, 5, 4, 24


def _labels(n: int, c: int = C, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = (rng.random((n, c)) < 0.2).astype(np.float64)
    lab[np.arange(n), np.arange(n) % c] = 1
    return lab


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"train_img": rng.normal(size=(N_TR, D_IMG)), "train_txt": rng.random((N_TR, D_TXT)).astype(np.float32),
            "train_lab": _labels(N_TR), "test_img": rng.normal(size=(N_TE, D_IMG)),
            "test_txt": rng.random((N_TE, D_TXT)).astype(np.float32), "test_lab": _labels(N_TE, seed=1)}


def _save(path: Path, arrays: dict[str, np.ndarray], v73: bool = False) -> None:
    if v73:  # MATLAB v7.3 = HDF5, column-major: h5py sees every array transposed
        with h5py.File(path, "w") as f:
            for key, arr in arrays.items():
                f.create_dataset(key, data=np.asarray(arr).T)
    else:
        savemat(path, arrays)


def write_layout_a(folder: Path, v73: bool = False, **override: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {**_arrays(), **override}
    for key, arr in arrays.items():
        _save(folder / f"{key}.mat", {key: arr}, v73)
    return folder


def load(name: str, root: Path, **params):
    cls = get_dataset(name)
    return cls(cls.Params(root=str(root), **params), cache_dir=root.parent / "cache").load()


@pytest.mark.parametrize("v73", [False, True], ids=["classic", "v7.3"])
def test_layout_a_loads_train_and_test_as_predefined_split(tmp_path, v73):
    data = load("mirflickr", write_layout_a(tmp_path / "mir", v73=v73))
    assert data.image.shape == (N_TR + N_TE, D_IMG) and data.text.shape == (N_TR + N_TE, D_TXT)
    assert data.image.dtype == np.float32
    np.testing.assert_array_equal(data.predefined_split["train"], np.arange(N_TR))
    np.testing.assert_array_equal(data.predefined_split["test"], np.arange(N_TR, N_TR + N_TE))
    np.testing.assert_allclose(data.image[:N_TR], _arrays()["train_img"], rtol=1e-6)
    assert data.label_names[:3] == ("animals", "baby", "bird") and len(data.label_names) == 24


def test_float64_features_are_coerced_and_the_info_says_so(tmp_path):
    data = load("mirflickr", write_layout_a(tmp_path / "mir"))
    assert "train_img" in data.info["coerced_float64"] and "train_txt" not in data.info["coerced_float64"]


def test_layout_b_single_file_with_db_split(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"I_tr": rng.normal(size=(10, 3)), "T_tr": rng.normal(size=(10, 2)), "L_tr": _labels(10, 21),
              "I_te": rng.normal(size=(4, 3)), "T_te": rng.normal(size=(4, 2)), "L_te": _labels(4, 21),
              "I_db": rng.normal(size=(8, 3)), "T_db": rng.normal(size=(8, 2)), "L_db": _labels(8, 21)}
    folder = tmp_path / "nus"
    folder.mkdir()
    _save(folder / "nus-wide-tc21.mat", arrays, v73=True)
    data = load("nuswide", folder)
    assert {k: len(v) for k, v in data.predefined_split.items()} == {"train": 10, "test": 4, "db": 8}
    assert data.label_names[0] == "sky" and data.info["layout"] == "B"
    np.testing.assert_allclose(data.text[14:], arrays["T_db"], rtol=1e-6)


def test_single_label_class_ids_become_one_hot(tmp_path):
    folder = tmp_path / "coco"
    arrays = _arrays()
    for key in ("train_img", "train_txt", "test_img", "test_txt"):
        savemat(folder.mkdir(exist_ok=True) or folder / f"{key}.mat", {key: arrays[key]})
    savemat(folder / "train_img_lab.mat", {"train_img_lab": (np.arange(N_TR) % 3 + 1)[:, None]})
    savemat(folder / "test_img_lab.mat", {"test_img_lab": (np.arange(N_TE) % 3 + 1)[:, None]})
    data = load("mscoco", folder)
    assert data.labels.shape == (N_TR + N_TE, 3) and (data.labels.sum(1) == 1).all()
    assert data.labels[0, 0] == 1 and data.labels[2, 2] == 1
    assert "generic names" in data.info["label_names"] and data.label_names[0] == "label_00"


def test_adj_and_nums_are_passed_as_extras_with_nums_flattened(tmp_path):
    folder = write_layout_a(tmp_path / "mir")
    savemat(folder / "adj.mat", {"adj": np.ones((C, C)), "nums": np.arange(C)[None, :]})
    data = load("mirflickr", folder)
    assert data.extras["adj"].shape == (C, C) and data.extras["nums"].shape == (C,)


def test_without_adj_the_extras_stay_empty(tmp_path):
    assert "adj" not in load("mirflickr", write_layout_a(tmp_path / "mir")).extras


def test_glove_file_is_used_under_auto(tmp_path):
    folder = write_layout_a(tmp_path / "mir")
    inp = np.random.default_rng(0).normal(size=(C, 300))
    savemat(folder / "mirflickr-inp-glove6B.mat", {"inp": inp})
    data = load("mirflickr", folder)
    assert data.label_embedding_source == "glove:mirflickr-inp-glove6B.mat"
    np.testing.assert_allclose(data.label_embeddings, inp, rtol=1e-6)


def test_glove_requested_but_absent_names_the_expected_file(tmp_path):
    with pytest.raises(DataError, match="mirflickr-inp-glove6B.mat"):
        load("mirflickr", write_layout_a(tmp_path / "mir"), label_embeddings="glove")


def test_onehot_and_random_embeddings_record_their_source(tmp_path):
    folder = write_layout_a(tmp_path / "mir")
    assert load("mirflickr", folder, label_embeddings="onehot").label_embedding_source == "onehot"
    a = load("mirflickr", folder, label_embeddings="random", embedding_seed=3)
    b = load("mirflickr", folder, label_embeddings="random", embedding_seed=3)
    assert a.label_embedding_source.startswith("random(seed=3")
    np.testing.assert_array_equal(a.label_embeddings, b.label_embeddings)


def test_unlabelled_items_are_dropped_and_counted(tmp_path):
    lab = _labels(N_TR)
    lab[[0, 5]] = 0
    data = load("mirflickr", write_layout_a(tmp_path / "mir", train_lab=lab))
    assert data.info["dropped_unlabelled"] == 2 and len(data.predefined_split["train"]) == N_TR - 2


# ---- the broken cases ------------------------------------------------------------------------------------
def test_missing_file_is_named_by_missing(tmp_path):
    folder = write_layout_a(tmp_path / "mir")
    (folder / "test_txt.mat").unlink()
    ds = get_dataset("mirflickr")(get_dataset("mirflickr").Params(root=str(folder)))
    assert "lacks test_txt.mat" in ds.missing()
    with pytest.raises(DataError, match="lacks test_txt.mat"):
        ds.load()


def test_wrong_key_names_file_key_and_what_was_found(tmp_path):
    folder = write_layout_a(tmp_path / "mir")
    savemat(folder / "train_txt.mat", {"txt": _arrays()["train_txt"]})
    with pytest.raises(DataError, match=r"train_txt.mat: no key 'train_txt' \(found: txt\)"):
        load("mirflickr", folder)


def test_wrong_shape_names_the_key_and_shapes(tmp_path):
    folder = write_layout_a(tmp_path / "mir", test_img=np.zeros((N_TE, D_IMG + 1)))
    with pytest.raises(DataError, match=rf"test_img.mat: key 'test_img' has {D_IMG + 1} columns, expected {D_IMG}"):
        load("mirflickr", folder)


def test_mismatched_rows_name_both_counts(tmp_path):
    folder = write_layout_a(tmp_path / "mir", train_lab=_labels(N_TR - 1))
    with pytest.raises(DataError, match=rf"train_lab.mat: key 'train_lab' has {N_TR - 1} rows, expected {N_TR}"):
        load("mirflickr", folder)


def test_nan_features_name_file_key_and_row(tmp_path):
    img = _arrays()["train_img"]
    img[4, 1] = np.nan
    folder = write_layout_a(tmp_path / "mir", v73=True, train_img=img)
    with pytest.raises(DataError, match=r"train_img.mat: key 'train_img' has 1 NaN/inf values \(first in row 4\)"):
        load("mirflickr", folder)


def test_non_binary_labels_are_rejected(tmp_path):
    lab = _labels(N_TR)
    lab[0, 0] = 2
    with pytest.raises(DataError, match=r"train_lab.mat: key 'train_lab' has label value 2"):
        load("mirflickr", write_layout_a(tmp_path / "mir", train_lab=lab))


def test_folder_without_either_layout_is_explained(tmp_path):
    (tmp_path / "mir").mkdir()
    ds = get_dataset("mirflickr")(get_dataset("mirflickr").Params(root=str(tmp_path / "mir")))
    assert "neither layout A" in ds.missing()


# ---- where the folder comes from --------------------------------------------------------------------------
def test_unset_folder_names_the_env_var_and_param(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_DATA_MIRFLICKR", raising=False)
    monkeypatch.delenv("BENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    message = get_dataset("mirflickr")().missing()
    assert "BENCH_DATA_MIRFLICKR" in message and "root" in message


def test_folder_from_dataset_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_DATA_MIRFLICKR", str(write_layout_a(tmp_path / "somewhere")))
    assert get_dataset("mirflickr")().missing() is None


def test_folder_from_bench_data_then_config_file(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_DATA_NUSWIDE", raising=False)
    write_layout_a(tmp_path / "all" / "nuswide")
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "all"))
    assert get_dataset("nuswide")().root()[1] == "env BENCH_DATA"
    monkeypatch.delenv("BENCH_DATA")
    cfg = tmp_path / "cfg" / "bench"
    cfg.mkdir(parents=True)
    (cfg / "data.yaml").write_text(f"nuswide: {tmp_path / 'all' / 'nuswide'}\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    root, source = get_dataset("nuswide")().root()
    assert root == tmp_path / "all" / "nuswide" and source.endswith("data.yaml")
