"""The data contract every dataset plugin returns: `CrossModalData`, validated once at load."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bench.errors import DataError


@dataclass(frozen=True, eq=False)
class CrossModalData:
    """Paired image/text features with multi-hot labels.

    `image` (n, d_img) and `text` (n, d_txt) are float32; `labels` (n, c) is uint8 in {0, 1}.
    `predefined_split` maps split names ("train", "test", optionally "db") to row indices when
    the dataset ships its own split. `image_present` / `text_present` (bool, (n,)) mark rows
    whose modality is missing (incomplete-modal protocol); missing features are zero-filled.
    `extras` carries optional dataset facts (e.g. "adj", "nums" co-occurrence counts).
    """

    name: str
    image: np.ndarray
    text: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    label_embeddings: np.ndarray | None = None
    label_embedding_source: str = "none"
    predefined_split: dict[str, np.ndarray] | None = None
    image_present: np.ndarray | None = None
    text_present: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of items."""
        return int(self.labels.shape[0])

    @property
    def num_labels(self) -> int:
        """Number of label columns c."""
        return int(self.labels.shape[1])

    def subset(self, index: np.ndarray) -> CrossModalData:
        """Rows `index` of every per-row array; the predefined split is dropped."""
        index = np.asarray(index)
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return replace(
            self,
            image=self.image[index],
            text=self.text[index],
            labels=self.labels[index],
            predefined_split=None,
            image_present=pick(self.image_present),
            text_present=pick(self.text_present),
            info=self._info_without_fingerprint(),
        )

    def _info_without_fingerprint(self) -> dict[str, Any]:
        return {k: v for k, v in self.info.items() if k != "_fingerprint"}

    def with_missing(self, image_present: np.ndarray, text_present: np.ndarray) -> CrossModalData:
        """A copy whose absent modalities are zero-filled and flagged."""
        image = self.image.copy()
        text = self.text.copy()
        image[~image_present] = 0.0
        text[~text_present] = 0.0
        return replace(self, image=image, text=text, image_present=image_present.copy(),
                       text_present=text_present.copy(), info=self._info_without_fingerprint())

    @property
    def is_complete(self) -> bool:
        """True when every row has both modalities."""
        return (self.image_present is None or bool(self.image_present.all())) and (
            self.text_present is None or bool(self.text_present.all()))

    def fingerprint(self) -> str:
        """Content hash of features, labels and predefined split (cached per instance)."""
        cached = self.info.get("_fingerprint")
        if cached:
            return cached
        h = hashlib.sha256()
        for arr in (self.image, self.text, self.labels):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        if self.predefined_split:
            for key in sorted(self.predefined_split):
                h.update(key.encode())
                h.update(np.asarray(self.predefined_split[key], dtype=np.int64).tobytes())
        digest = h.hexdigest()[:16]
        self.info["_fingerprint"] = digest
        return digest

    def summary(self) -> dict[str, Any]:
        """Shapes and label statistics, for logs and `bench data check`."""
        per_item = self.labels.sum(1)
        return {
            "name": self.name,
            "items": self.n,
            "image_dim": int(self.image.shape[1]),
            "text_dim": int(self.text.shape[1]),
            "labels": self.num_labels,
            "labels_per_item": float(per_item.mean()) if self.n else 0.0,
            "dropped_unlabelled": int(self.info.get("dropped_unlabelled", 0)),
            "label_embeddings": self.label_embedding_source,
        }


def _as_float32(name: str, what: str, arr: Any) -> np.ndarray:
    try:
        out = np.asarray(arr)
    except Exception as exc:  # pragma: no cover - defensive
        raise DataError(f"{name}: {what} cannot be read as an array ({exc})") from exc
    if out.ndim != 2:
        raise DataError(f"{name}: {what} must be 2-D (rows, features), got shape {out.shape}")
    if not np.issubdtype(out.dtype, np.number) and out.dtype != np.bool_:
        raise DataError(f"{name}: {what} has non-numeric dtype {out.dtype}; expected float32")
    out = out.astype(np.float32, copy=False)
    bad = ~np.isfinite(out)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DataError(
            f"{name}: {what} has {int(bad.sum())} non-finite values (NaN/inf) in {len(rows)} rows, "
            f"first row {int(rows[0])}; clean or impute them before loading")
    return np.ascontiguousarray(out)


def _checked_labels(name: str, labels: Any, n_image: int, n_text: int) -> np.ndarray:
    """The label matrix as uint8 after checking it is 2-D, binary and has one row per item."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise DataError(f"{name}: labels must be a 2-D multi-hot matrix (rows, labels), got shape {lab.shape}")
    if not (n_image == n_text == lab.shape[0]):
        raise DataError(
            f"{name}: row counts disagree: image {n_image}, text {n_text}, "
            f"labels {lab.shape[0]}; every row must be one paired item")
    if lab.size and not np.isin(lab, (0, 1)).all():
        bad = lab[~np.isin(lab, (0, 1))]
        raise DataError(f"{name}: labels must be 0/1, found value {bad.flat[0].item()!r}; "
                        "convert class ids to a multi-hot matrix")
    return lab.astype(np.uint8)


def _checked_split(name: str, predefined_split: dict[str, Any] | None, n: int) -> dict[str, np.ndarray] | None:
    """A dataset's own split as int64 index arrays inside 0..n-1."""
    if predefined_split is None:
        return None
    split = {}
    for key, idx in predefined_split.items():
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise DataError(f"{name}: predefined split '{key}' indexes outside 0..{n - 1}")
        split[key] = idx
    return split


def make_data(
    name: str,
    image: Any,
    text: Any,
    labels: Any,
    label_names: list[str] | tuple[str, ...] | None = None,
    *,
    label_embeddings: Any = None,
    label_embedding_source: str | None = None,
    predefined_split: dict[str, Any] | None = None,
    extras: dict[str, Any] | None = None,
    drop_unlabelled: bool = True,
    info: dict[str, Any] | None = None,
) -> CrossModalData:
    """Validate and coerce raw arrays into a `CrossModalData`.

    Checks that row counts agree, values are finite, labels are binary; rows with no label
    are dropped (and counted in `info["dropped_unlabelled"]`) because mAP is undefined for them.
    """
    image = _as_float32(name, "image features", image)
    text = _as_float32(name, "text features", text)
    lab = _checked_labels(name, labels, image.shape[0], text.shape[0])
    c = lab.shape[1]
    if label_names is None:
        label_names = tuple(f"label_{i}" for i in range(c))
    label_names = tuple(str(x) for x in label_names)
    if len(label_names) != c:
        raise DataError(f"{name}: {len(label_names)} label names for {c} label columns")
    emb = None
    if label_embeddings is not None:
        emb = _as_float32(name, "label embeddings", label_embeddings)
        if emb.shape[0] != c:
            raise DataError(f"{name}: label embeddings have {emb.shape[0]} rows for {c} labels")
    split = _checked_split(name, predefined_split, lab.shape[0])
    info = dict(info or {})
    keep = lab.sum(1) > 0
    dropped = int((~keep).sum())
    if dropped:
        if not drop_unlabelled:
            raise DataError(f"{name}: {dropped} items have no label; mAP is undefined for them")
        new_index = np.cumsum(keep) - 1
        image, text, lab = image[keep], text[keep], lab[keep]
        if split is not None:
            split = {k: new_index[v[keep[v]]] for k, v in split.items()}
    info["dropped_unlabelled"] = info.get("dropped_unlabelled", 0) + dropped
    if lab.shape[0] == 0:
        raise DataError(f"{name}: no labelled items left")
    return CrossModalData(
        name=name, image=image, text=text, labels=lab, label_names=label_names,
        label_embeddings=emb,
        label_embedding_source=label_embedding_source or ("given" if emb is not None else "none"),
        predefined_split=split, extras=dict(extras or {}), info=info,
    )
