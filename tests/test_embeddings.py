"""bench.embeddings: seeded samples, float16 npz round trips, and corrupt files refused in one line."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bench.embeddings import EmbeddingsError, load_embeddings, sample_indices, save_embeddings, save_test_embeddings


def _items(n: int = 30, d_img: int = 8, d_txt: int = 6, c: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.4).astype(np.uint8)
    return rng.normal(size=(n, d_img)).astype(np.float32), rng.normal(size=(n, d_txt)).astype(np.float32), labels


def _saved(tmp_path: Path, **meta) -> Path:
    image, text, labels = _items()
    path = tmp_path / "embeddings.npz"
    save_embeddings(path, image, text, labels, np.arange(30) * 2, seed=7, n_total=60, meta=meta or None)
    return path


def _rewrite(path: Path, **replace) -> None:
    """Rewrite the npz at `path` with some arrays replaced (None drops one)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(replace)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if v is not None})
    path.write_bytes(buffer.getvalue())


def _meta(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(str(npz["meta"]))


# --- sampling ----------------------------------------------------------------------------


def test_sample_keeps_every_item_when_they_fit():
    assert np.array_equal(sample_indices(5, 10, seed=3), np.arange(5))


def test_sample_is_sorted_distinct_and_within_bounds():
    picked = sample_indices(1000, 100, seed=1)
    assert picked.shape == (100,) and picked.dtype == np.int64
    assert np.all(np.diff(picked) > 0) and picked[0] >= 0 and picked[-1] < 1000


def test_sample_depends_only_on_its_seed():
    assert np.array_equal(sample_indices(1000, 100, seed=1), sample_indices(1000, 100, seed=1))
    assert not np.array_equal(sample_indices(1000, 100, seed=1), sample_indices(1000, 100, seed=2))


@pytest.mark.parametrize("n, max_items", [(-1, 5), (5, 0), (5, 2.5), (True, 5)])
def test_sample_refuses_bad_sizes(n, max_items):
    with pytest.raises(ValueError):
        sample_indices(n, max_items, seed=0)


# --- round trip ----------------------------------------------------------------------------


def test_float16_values_round_trip_bit_exact(tmp_path):
    image, text, labels = (x.astype(np.float16) if x.dtype != np.uint8 else x for x in _items())
    path = tmp_path / "e.npz"
    save_embeddings(path, image, text, labels, np.arange(30), seed=0, n_total=30)
    back = load_embeddings(path)
    assert back.image.dtype == np.float32
    assert back.image.astype(np.float16).tobytes() == image.tobytes()
    assert back.text.astype(np.float16).tobytes() == text.tobytes()
    assert np.array_equal(back.labels, labels) and np.array_equal(back.indices, np.arange(30))


def test_float32_values_come_back_within_float16_precision(tmp_path):
    image, text, labels = _items()
    path = tmp_path / "e.npz"
    save_embeddings(path, image, text, labels, np.arange(30), seed=0, n_total=30)
    back = load_embeddings(path)
    assert np.allclose(back.image, image, rtol=2**-10, atol=2**-14)
    assert not np.array_equal(back.image, image)  # it really was stored in float16


def test_embeddings_beyond_float16_range_are_scaled_not_lost(tmp_path):
    image, text, labels = _items()
    image = image * 1e6  # float16 tops out at 65504
    path = tmp_path / "e.npz"
    info = save_embeddings(path, image, text, labels, np.arange(30), seed=0, n_total=30)
    back = load_embeddings(path)
    assert info["scale_image"] > 1 and info["scale_text"] == 1
    assert np.isfinite(back.image).all()
    assert np.allclose(back.image, image, rtol=2**-10, atol=1e6 * 2**-14)


def test_scaling_is_by_a_power_of_two_so_scaled_float16_values_come_back_exactly(tmp_path):
    image, text, labels = _items()
    image = image.astype(np.float16).astype(np.float64) * 2.0**20
    path = tmp_path / "e.npz"
    save_embeddings(path, image, text, labels, np.arange(30), seed=0, n_total=30)
    assert np.array_equal(load_embeddings(path).image, image)


def test_tiny_embeddings_keep_their_digits(tmp_path):
    image, text, labels = _items()
    image = image * 1e-7  # below float16's smallest normal number
    path = tmp_path / "e.npz"
    save_embeddings(path, image, text, labels, np.arange(30), seed=0, n_total=30)
    assert np.allclose(load_embeddings(path).image, image, rtol=2**-10, atol=1e-7 * 2**-14)


def test_metadata_states_dims_counts_seed_and_caller_facts(tmp_path):
    meta = load_embeddings(_saved(tmp_path, method="pgnn_con", seed_run=3)).meta
    assert (meta["d_image"], meta["d_text"], meta["num_labels"]) == (8, 6, 5)
    assert (meta["n_saved"], meta["n_total"], meta["seed"], meta["dtype"]) == (30, 60, 7, "float16")
    assert meta["method"] == "pgnn_con"


def test_save_test_embeddings_saves_the_seeded_sample_rows(tmp_path):
    image, text, labels = _items(n=50)
    info = save_test_embeddings(tmp_path / "e.npz", image, text, labels, max_items=20, seed=4)
    back = load_embeddings(tmp_path / "e.npz")
    expected = sample_indices(50, 20, seed=4)
    assert np.array_equal(back.indices, expected)
    assert np.allclose(back.image, image[expected], rtol=2**-10, atol=2**-14)
    assert np.array_equal(back.labels, labels[expected])
    assert info["bytes"] == (tmp_path / "e.npz").stat().st_size


def test_file_size_matches_the_documented_bytes_per_item(tmp_path):
    # module docstring: 2 * (d_img + d_txt) + c + 8 bytes per item, plus about 1 KiB of headers
    n, d, c = 500, 64, 10
    rng = np.random.default_rng(0)
    size = save_test_embeddings(tmp_path / "e.npz", rng.normal(size=(n, d)), rng.normal(size=(n, d)),
                                np.eye(c, dtype=np.uint8)[rng.integers(0, c, n)], max_items=n)["bytes"]
    assert 0 <= size - n * (2 * (d + d) + c + 8) < 2048


def test_save_replaces_atomically_and_leaves_no_temporary(tmp_path):
    path = _saved(tmp_path)
    image, text, labels = _items(seed=1)
    save_embeddings(path, image, text, labels, np.arange(30), seed=0, n_total=30)
    assert np.allclose(load_embeddings(path).image, image, rtol=2**-10, atol=2**-14)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.npz"]


@pytest.mark.parametrize("change, message", [
    (dict(image=np.full((30, 8), np.nan, np.float32)), "NaN"),
    (dict(labels=np.full((30, 5), 2, np.uint8)), "0/1"),
    (dict(indices=np.arange(30)[::-1]), "strictly increasing"),
    (dict(text=np.zeros((29, 6), np.float32)), "disagree in rows"),
])
def test_save_refuses_what_could_not_be_read_back_and_writes_nothing(tmp_path, change, message):
    image, text, labels = _items()
    args = dict(image=image, text=text, labels=labels, indices=np.arange(30), **{})
    args.update(change)
    with pytest.raises(ValueError, match=message):
        save_embeddings(tmp_path / "e.npz", args["image"], args["text"], args["labels"], args["indices"],
                        seed=0, n_total=30)
    assert list(tmp_path.iterdir()) == []


# --- refusing bad files ----------------------------------------------------------------------


def _refused(path: Path, needle: str) -> str:
    with pytest.raises(EmbeddingsError) as caught:
        load_embeddings(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and needle in message
    return message


def test_missing_file_is_refused_in_one_line(tmp_path):
    _refused(tmp_path / "absent.npz", "no embeddings file")


def test_truncated_file_is_refused_in_one_line(tmp_path):
    path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    _refused(path, "unreadable")


def test_text_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "e.npz"
    path.write_text("not an archive\n")
    _refused(path, "unreadable")


def test_pickled_arrays_are_refused_not_loaded(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, labels=np.array([{"evil": 1}] * 30, dtype=object))
    _refused(path, "unreadable")


def test_missing_array_is_refused(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, indices=None)
    _refused(path, "not a bench embeddings file")


@pytest.mark.parametrize("array, value, needle", [
    ("image", np.full((30, 8), np.inf, np.float16), "NaN or infinite"),
    ("image", np.zeros((30, 8), np.float32), "float32"),
    ("text", np.zeros((30, 7), np.float16), "shape"),
    ("labels", np.full((30, 5), 3, np.uint8), "0/1"),
    ("indices", np.zeros(30, np.int64), "strictly increasing"),
    ("indices", np.arange(30, dtype=np.int64) + 100, "strictly increasing"),
    ("meta", np.array("{not json"), "not valid JSON"),
    ("meta", np.array(json.dumps({"format": "other/9"})), "unknown format"),
])
def test_inconsistent_array_is_refused(tmp_path, array, value, needle):
    path = _saved(tmp_path)
    _rewrite(path, **{array: value})
    _refused(path, needle)


@pytest.mark.parametrize("key, value, needle", [
    ("n_saved", 31, "shape"),
    ("d_image", -1, "meta.d_image"),
    ("n_total", 10, "exceeds"),
    ("scale_image", 0, "meta.scale_image"),
    ("seed", None, "meta.seed"),
])
def test_metadata_that_disagrees_with_the_arrays_is_refused(tmp_path, key, value, needle):
    path = _saved(tmp_path)
    meta = _meta(path)
    meta[key] = value
    _rewrite(path, meta=np.array(json.dumps(meta)))
    _refused(path, needle)


def test_an_extra_array_is_refused(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, extra=np.zeros(3))
    _refused(path, "not a bench embeddings file")


def test_a_zip_that_is_not_an_npz_is_refused(tmp_path):
    path = tmp_path / "e.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    _refused(path, "not a bench embeddings file")
