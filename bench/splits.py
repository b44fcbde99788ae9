"""Seeded train/val/test splits, cached on disk, and incomplete-modal masks.

A split is a pure function of (dataset fingerprint, split spec); it is computed once and
persisted so that every method in a sweep (and every later sweep) sees identical rows.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bench.data import CrossModalData
from bench.errors import ConfigError, DataError
from bench.params import spec
from bench.records import write_atomic


@dataclass(frozen=True)
class SplitSpec:
    """How to split: fractions of rows for validation and test, the split seed, the retrieval set."""

    val: float = spec(0.1, help="fraction of the training rows held out for model selection", low=0.0, high=0.9)
    test: float = spec(0.2, help="fraction of rows used as test queries (ignored if the dataset ships a test split)",
                       low=0.0, high=0.9)
    seed: int = spec(0, help="seed of the split (independent of the training seed)", low=0)
    retrieval: Literal["test", "train+test", "db"] = spec(
        "test", help="retrieval set: the test queries (field default), train+test, or the dataset's db split")


@dataclass(frozen=True)
class MissingSpec:
    """Incomplete-modal protocol: fractions of training rows that are paired / image-only / text-only."""

    paired: float = spec(1.0, help="fraction of training rows with both modalities", low=0.0, high=1.0)
    image_only: float = spec(0.0, help="fraction of training rows with the image only", low=0.0, high=1.0)
    text_only: float = spec(0.0, help="fraction of training rows with the text only", low=0.0, high=1.0)
    seed: int = spec(0, help="seed of the mask", low=0)

    def __post_init__(self) -> None:
        total = self.paired + self.image_only + self.text_only
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"paired + image_only + text_only must be 1, got {total:g}")

    @property
    def complete(self) -> bool:
        """True when every training row keeps both modalities."""
        return self.paired >= 1.0


@dataclass(frozen=True)
class Split:
    """Row indices: train, val (model selection), test (queries) and retrieval (database)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    retrieval: np.ndarray


def _spec_hash(spec_: SplitSpec) -> str:
    return hashlib.sha256(json.dumps(asdict(spec_), sort_keys=True).encode()).hexdigest()[:12]


def compute_split(data: CrossModalData, spec_: SplitSpec) -> Split:
    """Deterministic split from the data's predefined split (if any) and the seeded spec."""
    rng = np.random.default_rng(spec_.seed)
    pre = data.predefined_split
    if pre and "train" in pre and "test" in pre:
        pool = np.asarray(pre["train"], dtype=np.int64)
        test = np.sort(np.asarray(pre["test"], dtype=np.int64))
    else:
        perm = rng.permutation(data.n)
        n_test = int(round(spec_.test * data.n))
        test, pool = np.sort(perm[:n_test]), perm[n_test:]
    pool = rng.permutation(pool)
    n_val = int(round(spec_.val * len(pool)))
    val, train = np.sort(pool[:n_val]), np.sort(pool[n_val:])
    if len(train) == 0 or len(test) == 0 or (spec_.val > 0 and len(val) == 0):
        raise DataError(f"{data.name}: split leaves an empty part (train {len(train)}, val {len(val)}, "
                        f"test {len(test)}) from {data.n} rows; use more data or other fractions")
    if spec_.retrieval == "test":
        retrieval = test
    elif spec_.retrieval == "train+test":
        retrieval = np.sort(np.concatenate([train, test]))
    else:
        if not pre or "db" not in pre:
            raise ConfigError(f"split.retrieval: dataset '{data.name}' has no predefined 'db' split; "
                              "use 'test' or 'train+test'")
        retrieval = np.sort(np.asarray(pre["db"], dtype=np.int64))
    return Split(train=train, val=val, test=test, retrieval=retrieval)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def split_path(cache_dir: Path, data: CrossModalData, spec_: SplitSpec) -> Path:
    """Where the split of `data` under `spec_` is persisted."""
    return Path(cache_dir) / "splits" / f"{data.name}-{data.fingerprint()}-{_spec_hash(spec_)}.npz"


def get_split(data: CrossModalData, spec_: SplitSpec, cache_dir: Path | None) -> Split:
    """The persisted split if present (verified against the data), else computed and persisted."""
    if cache_dir is None:
        return compute_split(data, spec_)
    path = split_path(cache_dir, data, spec_)
    if path.exists():
        cached = read_cached_split(path, data.n)
        if cached is not None:
            return cached
    split = compute_split(data, spec_)
    _atomic_savez(path, **asdict(split))
    return split


def read_cached_split(path: Path, n: int) -> Split | None:
    """A cached split if the file is whole and consistent with `n` rows, else None (it is then recomputed).

    Checked: a readable .npz with the four int arrays, 1-D, sorted, without repeats, inside 0..n-1,
    non-empty train and test, and train, val and test disjoint.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in ("train", "val", "test", "retrieval")}
    except Exception:  # noqa: BLE001 - truncated zip, missing key, not a zip: all mean "recompute"
        return None
    for a in arrays.values():
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            return None
        if a.size and (a.min() < 0 or a.max() >= n or np.any(np.diff(a) <= 0)):
            return None
    if not arrays["train"].size or not arrays["test"].size:
        return None
    parts = np.concatenate([arrays["train"], arrays["val"], arrays["test"]])
    if np.unique(parts).size != parts.size:
        return None
    return Split(**{k: v.astype(np.int64) for k, v in arrays.items()})


def missing_mask(n: int, spec_: MissingSpec) -> tuple[np.ndarray, np.ndarray]:
    """(image_present, text_present) for n training rows: a seeded assignment of exact counts."""
    rng = np.random.default_rng(spec_.seed)
    n_paired = int(round(spec_.paired * n))
    n_img = int(round(spec_.image_only * n))
    n_img = min(n_img, n - n_paired)
    kind = np.full(n, 2, dtype=np.int8)  # 0 paired, 1 image-only, 2 text-only
    kind[:n_paired] = 0
    kind[n_paired:n_paired + n_img] = 1
    kind = kind[rng.permutation(n)]
    return kind != 2, kind != 1
