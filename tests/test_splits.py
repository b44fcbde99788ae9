"""Splits: seeded, disjoint, persisted and reused; incomplete-modal masks with exact counts."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data import make_data
from bench.errors import ConfigError, DataError
from bench.splits import MissingSpec, SplitSpec, compute_split, get_split, missing_mask, split_path


def _data(n=200, predefined=None, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 3), dtype=np.uint8)
    labels[np.arange(n), np.arange(n) % 3] = 1
    return make_data("toy", rng.normal(size=(n, 4)), rng.normal(size=(n, 3)), labels, predefined_split=predefined)


def _parts(split):
    return split.train, split.val, split.test


def test_the_same_seed_gives_the_same_split():
    a, b = compute_split(_data(), SplitSpec(seed=3)), compute_split(_data(), SplitSpec(seed=3))
    for x, y in zip(_parts(a), _parts(b)):
        np.testing.assert_array_equal(x, y)


def test_another_seed_gives_another_split():
    a, b = compute_split(_data(), SplitSpec(seed=3)), compute_split(_data(), SplitSpec(seed=4))
    assert not np.array_equal(a.test, b.test)


def test_train_val_and_test_are_disjoint_and_cover_every_row():
    s = compute_split(_data(n=200), SplitSpec(val=0.1, test=0.2))
    together = np.concatenate(_parts(s))
    assert len(together) == 200
    np.testing.assert_array_equal(np.sort(together), np.arange(200))


def test_part_sizes_follow_the_fractions():
    s = compute_split(_data(n=200), SplitSpec(val=0.1, test=0.2))
    assert (len(s.test), len(s.val), len(s.train)) == (40, 16, 144)  # val is 10% of the 160 non-test rows


def test_the_retrieval_set_is_the_test_set_by_default():
    s = compute_split(_data(), SplitSpec())
    np.testing.assert_array_equal(s.retrieval, s.test)


def test_retrieval_train_plus_test_is_the_union_and_excludes_validation():
    s = compute_split(_data(), SplitSpec(retrieval="train+test"))
    np.testing.assert_array_equal(s.retrieval, np.sort(np.concatenate([s.train, s.test])))
    assert not set(s.val) & set(s.retrieval)


def test_a_predefined_test_split_is_kept_and_validation_is_carved_from_train():
    pre = {"train": np.arange(0, 150), "test": np.arange(150, 200)}
    s = compute_split(_data(predefined=pre), SplitSpec(val=0.2, test=0.5))
    np.testing.assert_array_equal(s.test, np.arange(150, 200))  # the test fraction is ignored
    assert set(s.val) | set(s.train) == set(range(150))
    assert len(s.val) == 30 and not set(s.val) & set(s.train)


def test_retrieval_db_uses_the_predefined_database_split():
    pre = {"train": np.arange(0, 150), "test": np.arange(150, 200), "db": np.arange(0, 150)}
    s = compute_split(_data(predefined=pre), SplitSpec(retrieval="db"))
    np.testing.assert_array_equal(s.retrieval, np.arange(150))


def test_retrieval_db_without_a_database_split_is_a_config_error():
    with pytest.raises(ConfigError, match="has no predefined 'db' split"):
        compute_split(_data(), SplitSpec(retrieval="db"))


def test_a_split_that_leaves_an_empty_part_is_rejected():
    with pytest.raises(DataError, match="split leaves an empty part"):
        compute_split(_data(n=4), SplitSpec(val=0.1, test=0.1))


def test_the_split_is_persisted_and_reloaded_identically(tmp_path):
    data = _data()
    first = get_split(data, SplitSpec(seed=1), tmp_path)
    assert split_path(tmp_path, data, SplitSpec(seed=1)).exists()
    again = get_split(_data(), SplitSpec(seed=1), tmp_path)
    for x, y in zip(_parts(first), _parts(again)):
        np.testing.assert_array_equal(x, y)


def test_a_persisted_split_is_what_later_runs_see(tmp_path):
    # proves the cache is read back rather than recomputed: plant different (valid) indices in it
    data, spec = _data(), SplitSpec(seed=1)
    get_split(data, spec, tmp_path)
    path = split_path(tmp_path, data, spec)
    planted = {"train": np.arange(0, 100), "val": np.arange(100, 120), "test": np.arange(120, 200),
               "retrieval": np.arange(120, 200)}
    np.savez(path, **planted)
    np.testing.assert_array_equal(get_split(data, spec, tmp_path).train, np.arange(0, 100))


def test_the_cache_file_depends_on_the_data_and_the_spec(tmp_path):
    data = _data()
    paths = {split_path(tmp_path, data, SplitSpec(seed=0)), split_path(tmp_path, data, SplitSpec(seed=1)),
             split_path(tmp_path, data, SplitSpec(val=0.2)), split_path(tmp_path, _data(seed=5), SplitSpec(seed=0))}
    assert len(paths) == 4


def test_the_mask_has_exact_counts_of_paired_image_only_and_text_only_rows():
    img, txt = missing_mask(100, MissingSpec(paired=0.2, image_only=0.4, text_only=0.4, seed=0))
    assert int((img & txt).sum()) == 20
    assert int((img & ~txt).sum()) == 40
    assert int((~img & txt).sum()) == 40
    assert not (~img & ~txt).any()  # every row keeps at least one modality


def test_the_mask_is_seeded():
    spec = MissingSpec(paired=0.2, image_only=0.4, text_only=0.4, seed=7)
    a, b = missing_mask(50, spec), missing_mask(50, spec)
    c = missing_mask(50, MissingSpec(paired=0.2, image_only=0.4, text_only=0.4, seed=8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_a_complete_spec_keeps_every_modality():
    img, txt = missing_mask(30, MissingSpec())
    assert img.all() and txt.all()


def test_mask_fractions_that_do_not_sum_to_one_are_rejected():
    with pytest.raises(ConfigError, match="must be 1, got 0.9"):
        MissingSpec(paired=0.5, image_only=0.2, text_only=0.2)


def test_applying_a_mask_zero_fills_and_flags_the_absent_modality():
    data = _data(n=10)
    img = np.array([True] * 5 + [False] * 5)
    txt = np.array([False] * 3 + [True] * 7)
    masked = data.with_missing(img, txt)
    assert not masked.is_complete
    assert (masked.image[5:] == 0).all() and (masked.text[:3] == 0).all()
    np.testing.assert_array_equal(masked.image[:5], data.image[:5])
    assert data.is_complete  # the original is untouched
