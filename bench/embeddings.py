"""Saved test-split embeddings: a seeded sample of items, both modalities, float16, one `.npz` per run.

The diagnostics (`bench.diagnostics`) are computed by the report from these files, never by
re-training. Conventions:

- **Sample.** At most ``max_items`` test items are kept, chosen by ``sample_indices(n, max_items,
  seed)``: all of them when n <= max_items, else a uniform sample without replacement, sorted.
  The sample depends only on (n, max_items, seed), so runs that share a test split and a sample
  seed (use the split seed, not the run seed) save the same items: the t-SNE panels, the
  per-label comparisons and the retrieval gallery then compare methods on identical items.
- **Contents.** Arrays ``image`` (m, d_img) and ``text`` (m, d_txt) in float16, ``labels``
  (m, c) uint8 in {0, 1}, ``indices`` (m,) int64 (positions in the test split, strictly
  increasing), and ``meta``, a 0-d unicode array holding a JSON object (no pickle anywhere):
  ``format``, ``dtype``, ``n_total`` (test items), ``n_saved`` (m), ``d_image``, ``d_text``,
  ``num_labels``, ``seed`` (the sample seed), ``scale_image`` / ``scale_text`` and whatever
  the caller adds (method, dataset, run key).
- **Range.** float16 holds |x| up to 65504 with about 3 significant digits. A modality whose
  largest |value| lies outside [2**-8, 2**15] is stored divided by a power of two (``scale_*``,
  exact in binary floating point) and multiplied back on load; otherwise the scale is 1 and the
  file holds the embeddings as they are. Every diagnostic uses cosine geometry, which a common
  positive scale does not change.
- **Size.** Bytes per item = 2 * (d_img + d_txt) (float16) + c (labels) + 8 (index); the file
  is written uncompressed (float16 embeddings barely compress) and adds about 1 KiB of zip
  headers. Worked example, D = 1024 in both modalities, 2,000 items, c = 80 labels:
  2 * (1024 + 1024) + 80 + 8 = 4,184 bytes per item, 8.37 MB per run; with D = 256,
  2 * 512 + 88 = 1,112 bytes per item, 2.2 MB. The default ``EMBEDDINGS_MAX = 2000`` keeps a
  D = 1024 run under 10 MB (an ablation of 5 methods x 3 seeds: 126 MB) while leaving enough
  items for per-label AP on labels with 1% frequency (about 20 carriers) and a t-SNE sample.
- **Validation on load.** The file must be a readable npz with exactly these keys; every array
  has its dtype and rank, rows agree across arrays, widths and counts agree with ``meta``,
  values are finite, labels are 0/1, indices are strictly increasing within [0, n_total).
  Any failure raises `EmbeddingsError` with one line naming the file and what is wrong.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import DataError
from bench.records import write_atomic

EMBEDDINGS_MAX = 2000
FORMAT = "bench-embeddings/1"
FILE_NAME = "embeddings.npz"
_KEYS = frozenset({"image", "text", "labels", "indices", "meta"})
_FLOAT16_MAX_EXP = 15  # store |x| < 2**15, well inside float16's 65504
_FLOAT16_MIN_EXP = -8  # below 2**-8 a largest value would lose digits to float16 subnormals


class EmbeddingsError(DataError):
    """A saved embeddings file is missing, unreadable or inconsistent (one line, names the file)."""


@dataclass(frozen=True, eq=False)
class SavedEmbeddings:
    """Embeddings read back by `load_embeddings`: float32 arrays with the scale already applied."""

    image: np.ndarray
    text: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    meta: dict[str, Any]

    @property
    def n(self) -> int:
        """Number of saved items."""
        return int(self.indices.shape[0])


def sample_indices(n: int, max_items: int, seed: int) -> np.ndarray:
    """Sorted int64 positions of at most `max_items` of `n` items: all when n <= max_items, else a
    uniform sample without replacement drawn by ``np.random.default_rng(seed)``."""
    for name, value in (("n", n), ("max_items", max_items)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if max_items == 0:
        raise ValueError("max_items must be positive (use --no-embeddings to save none)")
    if n <= max_items:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_items, replace=False)).astype(np.int64)


def float16_scale(x: np.ndarray) -> float:
    """The power of two that `x` is divided by before the float16 cast (1.0 when none is needed)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0 or 2.0**_FLOAT16_MIN_EXP <= peak <= 2.0**_FLOAT16_MAX_EXP:
        return 1.0
    return 2.0 ** (math.floor(math.log2(peak)) - (_FLOAT16_MAX_EXP - 1))


def save_embeddings(path: Path | str, image: np.ndarray, text: np.ndarray, labels: np.ndarray,
                    indices: np.ndarray, *, seed: int, n_total: int,
                    meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the sampled items' embeddings atomically to `path` (an ``.npz``); return its metadata.

    `image`, `text` and `labels` hold the rows of the sampled items only, in the order of
    `indices` (their positions in the test split of `n_total` items, as `sample_indices` gives).
    `seed` is the sample seed; `meta` adds JSON-able facts (method, dataset, run key) to the file.
    Raises ValueError for inputs that could not be read back (shapes, NaN, non-binary labels).
    """
    image, text = np.asarray(image), np.asarray(text)
    labels, indices = np.asarray(labels), np.asarray(indices)
    _check_inputs(image, text, labels, indices, n_total)
    scales = {name: float16_scale(x) for name, x in (("image", image), ("text", text))}
    info = {**(meta or {}), "format": FORMAT, "dtype": "float16", "n_total": int(n_total),
            "n_saved": int(indices.shape[0]), "d_image": int(image.shape[1]), "d_text": int(text.shape[1]),
            "num_labels": int(labels.shape[1]), "seed": int(seed),
            "scale_image": scales["image"], "scale_text": scales["text"]}
    buffer = io.BytesIO()
    np.savez(buffer, image=(image / scales["image"]).astype(np.float16),
             text=(text / scales["text"]).astype(np.float16), labels=labels.astype(np.uint8),
             indices=indices.astype(np.int64), meta=np.array(json.dumps(info, sort_keys=True)))
    write_atomic(Path(path), buffer.getvalue())
    return info


def save_test_embeddings(path: Path | str, image: np.ndarray, text: np.ndarray, labels: np.ndarray, *,
                         max_items: int = EMBEDDINGS_MAX, seed: int = 0,
                         meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample at most `max_items` rows of the whole test split (`image`, `text`, `labels`) and save
    them with `save_embeddings`; returns the file's metadata plus ``bytes`` (its size on disk)."""
    n = int(np.asarray(labels).shape[0])
    picked = sample_indices(n, max_items, seed)
    info = save_embeddings(path, np.asarray(image)[picked], np.asarray(text)[picked],
                           np.asarray(labels)[picked], picked, seed=seed, n_total=n, meta=meta)
    return {**info, "bytes": Path(path).stat().st_size}


def _check_inputs(image: np.ndarray, text: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                  n_total: int) -> None:
    """Refuse what `load_embeddings` would refuse, before anything is written."""
    for name, x in (("image", image), ("text", text), ("labels", labels)):
        if x.ndim != 2:
            raise ValueError(f"{name} must be 2-D (items, columns), got shape {x.shape}")
    if indices.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {indices.shape}")
    rows = {x.shape[0] for x in (image, text, labels, indices)}
    if len(rows) != 1:
        raise ValueError(f"image, text, labels and indices disagree in rows: "
                         f"{image.shape[0]}, {text.shape[0]}, {labels.shape[0]}, {indices.shape[0]}")
    for name, x in (("image", image), ("text", text)):
        if not np.isfinite(x).all():
            raise ValueError(f"{name} embeddings hold NaN or infinite values")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    if indices.size and (np.any(np.diff(indices) <= 0) or indices[0] < 0 or indices[-1] >= n_total):
        raise ValueError(f"indices must be strictly increasing within [0, n_total={n_total})")


def load_embeddings(path: Path | str) -> SavedEmbeddings:
    """Read and validate a file written by `save_embeddings` (float32 arrays, scale applied).

    Raises `EmbeddingsError` with one line naming the file and the problem.
    """
    path = Path(path)
    arrays = _read_npz(path)
    fail = lambda why: EmbeddingsError(f"{path}: {why}; delete the file and re-run its run")  # noqa: E731
    meta = _parse_meta(arrays["meta"], fail)
    _check_arrays(arrays, meta, fail)
    image = arrays["image"].astype(np.float32) * np.float32(meta["scale_image"])
    text = arrays["text"].astype(np.float32) * np.float32(meta["scale_text"])
    return SavedEmbeddings(image=image, text=text, labels=arrays["labels"], indices=arrays["indices"], meta=meta)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of the npz at `path`, loaded without pickle; one-line EmbeddingsError otherwise."""
    if not path.is_file():
        raise EmbeddingsError(f"{path}: no embeddings file there; run with embeddings saved (no --no-embeddings)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if keys != _KEYS:
                raise EmbeddingsError(f"{path}: not a bench embeddings file (arrays {sorted(keys)}, "
                                      f"expected {sorted(_KEYS)})")
            return {key: npz[key] for key in _KEYS}
    except EmbeddingsError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EmbeddingsError(f"{path}: unreadable embeddings file ({reason}); delete it and re-run the run") from None


def _parse_meta(meta: np.ndarray, fail: Any) -> dict[str, Any]:
    """The JSON metadata object, with the keys the checks need."""
    if meta.shape != () or meta.dtype.kind != "U":
        raise fail("meta is not a JSON string")
    try:
        info = json.loads(str(meta))
    except json.JSONDecodeError:
        raise fail("meta is not valid JSON") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise fail(f"unknown format {info.get('format') if isinstance(info, dict) else info!r} (expected {FORMAT})")
    for key in ("n_total", "n_saved", "d_image", "d_text", "num_labels", "seed"):
        if not isinstance(info.get(key), int) or isinstance(info.get(key), bool) or info[key] < 0:
            raise fail(f"meta.{key} is missing or not a non-negative integer")
    for key in ("scale_image", "scale_text"):
        scale = info.get(key)
        if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise fail(f"meta.{key} is missing or not a positive number")
    return info


def _check_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any], fail: Any) -> None:
    """Dtypes, ranks, rows, widths and values against each other and against `meta`."""
    image, text, labels, indices = (arrays[k] for k in ("image", "text", "labels", "indices"))
    expected = {"image": (np.float16, 2), "text": (np.float16, 2), "labels": (np.uint8, 2), "indices": (np.int64, 1)}
    for name, (dtype, ndim) in expected.items():
        if arrays[name].dtype != dtype or arrays[name].ndim != ndim:
            raise fail(f"{name} is {arrays[name].dtype} of rank {arrays[name].ndim}, expected {np.dtype(dtype)} "
                       f"of rank {ndim}")
    m = meta["n_saved"]
    shapes = {"image": (m, meta["d_image"]), "text": (m, meta["d_text"]), "labels": (m, meta["num_labels"]),
              "indices": (m,)}
    for name, shape in shapes.items():
        if arrays[name].shape != shape:
            raise fail(f"{name} has shape {arrays[name].shape}, meta says {shape}")
    if m > meta["n_total"]:
        raise fail(f"meta.n_saved={m} exceeds meta.n_total={meta['n_total']}")
    for name, x in (("image", image), ("text", text)):
        if not np.isfinite(x).all():
            raise fail(f"{name} holds NaN or infinite values")
    if labels.size and labels.max() > 1:
        raise fail("labels hold values other than 0/1")
    if m and (np.any(np.diff(indices) <= 0) or indices[0] < 0 or indices[-1] >= meta["n_total"]):
        raise fail(f"indices are not strictly increasing within [0, n_total={meta['n_total']})")
