"""The data contract: `make_data` validates once, coerces dtypes, drops and counts unlabelled rows."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data import make_data
from bench.errors import DataError


def _arrays(n=10, d_img=3, d_txt=2, c=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, c), dtype=np.int64)
    labels[np.arange(n), np.arange(n) % c] = 1  # every row has exactly one label
    return rng.normal(size=(n, d_img)), rng.normal(size=(n, d_txt)), labels


def test_rows_that_disagree_between_modalities_are_rejected_with_the_counts():
    img, txt, lab = _arrays()
    with pytest.raises(DataError, match=r"image 10, text 9, labels 10"):
        make_data("toy", img, txt[:9], lab)


def test_nan_features_are_rejected_naming_the_count_and_first_row():
    img, txt, lab = _arrays()
    img[3, 0] = np.nan
    img[7, 1] = np.nan
    img[7, 2] = np.nan
    with pytest.raises(DataError, match=r"image features has 3 non-finite values .* in 2 rows, first row 3"):
        make_data("toy", img, txt, lab)


def test_infinite_text_features_are_rejected():
    img, txt, lab = _arrays()
    txt[5, 1] = -np.inf
    with pytest.raises(DataError, match=r"text features has 1 non-finite values .* first row 5"):
        make_data("toy", img, txt, lab)


def test_labels_other_than_zero_and_one_are_rejected():
    img, txt, lab = _arrays()
    lab[2, 0] = 2
    with pytest.raises(DataError, match="labels must be 0/1"):
        make_data("toy", img, txt, lab)


def test_the_non_binary_label_message_shows_the_plain_value():
    img, txt, lab = _arrays()
    lab[2, 0] = 2
    with pytest.raises(DataError, match="found value 2;"):
        make_data("toy", img, txt, lab)


def test_class_ids_instead_of_a_multi_hot_matrix_are_rejected():
    img, txt, _ = _arrays()
    with pytest.raises(DataError, match="labels must be a 2-D multi-hot matrix"):
        make_data("toy", img, txt, np.arange(10) % 4)


def test_a_label_name_count_that_differs_from_the_label_columns_is_rejected():
    img, txt, lab = _arrays(c=4)
    with pytest.raises(DataError, match="3 label names for 4 label columns"):
        make_data("toy", img, txt, lab, ["a", "b", "c"])


def test_error_messages_are_one_line():
    img, txt, lab = _arrays()
    img[0, 0] = np.inf
    with pytest.raises(DataError) as err:
        make_data("toy", img, txt, lab)
    assert "\n" not in str(err.value)


def test_unlabelled_rows_are_dropped_and_counted():
    img, txt, lab = _arrays(n=10)
    lab[[1, 4]] = 0
    data = make_data("toy", img, txt, lab)
    assert data.n == 8
    assert data.info["dropped_unlabelled"] == 2
    assert data.summary()["dropped_unlabelled"] == 2
    keep = [0, 2, 3, 5, 6, 7, 8, 9]
    np.testing.assert_array_equal(data.image, img[keep].astype(np.float32))
    np.testing.assert_array_equal(data.labels, lab[keep])


def test_unlabelled_rows_are_an_error_when_dropping_is_switched_off():
    img, txt, lab = _arrays()
    lab[1] = 0
    with pytest.raises(DataError, match="1 items have no label"):
        make_data("toy", img, txt, lab, drop_unlabelled=False)


def test_dropping_rows_remaps_the_predefined_split_to_the_kept_rows():
    img, txt, lab = _arrays(n=10)
    lab[[1, 4]] = 0  # kept rows 0,2,3,5,6,7,8,9 become 0..7
    data = make_data("toy", img, txt, lab, predefined_split={"train": [0, 1, 2, 3, 4, 5], "test": [6, 7, 8, 9]})
    np.testing.assert_array_equal(data.predefined_split["train"], [0, 1, 2, 3])
    np.testing.assert_array_equal(data.predefined_split["test"], [4, 5, 6, 7])
    # the remapped indices still point at the same items
    np.testing.assert_array_equal(data.image[data.predefined_split["test"]], img[[6, 7, 8, 9]].astype(np.float32))


def test_a_predefined_split_indexing_outside_the_rows_is_rejected():
    img, txt, lab = _arrays(n=10)
    with pytest.raises(DataError, match="predefined split 'test' indexes outside 0..9"):
        make_data("toy", img, txt, lab, predefined_split={"train": [0, 1], "test": [10]})


def test_float64_features_are_coerced_to_float32_and_labels_to_uint8():
    img, txt, lab = _arrays()
    assert img.dtype == np.float64
    data = make_data("toy", img, txt, lab.astype(bool))
    assert data.image.dtype == np.float32 and data.text.dtype == np.float32
    assert data.labels.dtype == np.uint8
    np.testing.assert_allclose(data.image, img, rtol=1e-6)


def test_non_numeric_features_are_rejected_with_a_clear_message():
    img, txt, lab = _arrays()
    with pytest.raises(DataError, match="non-numeric dtype"):
        make_data("toy", img.astype(str), txt, lab)


def test_fingerprint_is_the_same_for_identical_content():
    a = make_data("toy", *_arrays(seed=1))
    b = make_data("toy", *_arrays(seed=1))
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize("what", ["image", "text", "labels"])
def test_fingerprint_changes_when_any_content_changes(what):
    img, txt, lab = _arrays(seed=1)
    before = make_data("toy", img, txt, lab).fingerprint()
    if what == "image":
        img[0, 0] += 1e-3
    elif what == "text":
        txt[9, 1] += 1e-3
    else:
        lab[0, 3] = 1
    assert make_data("toy", img, txt, lab).fingerprint() != before


def test_fingerprint_changes_with_the_predefined_split():
    img, txt, lab = _arrays()
    a = make_data("toy", img, txt, lab, predefined_split={"train": [0, 1, 2, 3, 4], "test": [5, 6, 7, 8, 9]})
    b = make_data("toy", img, txt, lab, predefined_split={"train": [0, 1, 2, 3, 5], "test": [4, 6, 7, 8, 9]})
    assert a.fingerprint() != b.fingerprint()


def test_a_subset_has_its_own_fingerprint():
    data = make_data("toy", *_arrays())
    whole = data.fingerprint()
    part = data.subset(np.arange(5))
    assert part.fingerprint() != whole
    assert part.fingerprint() == make_data("toy", *(a[:5] for a in _arrays())).fingerprint()


def test_fingerprinting_a_subset_does_not_change_the_parent_fingerprint():
    fresh = make_data("toy", *_arrays()).fingerprint()
    data = make_data("toy", *_arrays())
    data.subset(np.arange(5)).fingerprint()
    assert data.fingerprint() == fresh
