"""Loader shared by the standard benchmarks (MIRFlickr-25K, NUS-WIDE-21, MS-COCO).

Layout A (GNN4CMR / ALGCN / DSCMR): one folder with train_img.mat, train_txt.mat, train_lab.mat,
test_img.mat, test_txt.mat, test_lab.mat (each with the key named like the file), optional
adj.mat (adj, nums) and <name>-inp-glove6B.mat (inp); DSCMR's single-label variant stores
labels as train_img_lab.mat / test_img_lab.mat (class ids). Layout B (DCMH / hashing toolbox):
one file with I_tr, T_tr, L_tr, I_te, T_te, L_te and optionally I_db, T_db, L_db.
The layout is detected from the folder; both yield predefined "train" / "test" (/ "db") rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench import labelemb
from bench.data import CrossModalData, make_data
from bench.dataset import Dataset
from bench.errors import DataError
from bench.params import spec

from .locate import find_root, how_to_provide
from .matfile import mat_keys, read_mat

LAYOUT_A = ("train_img", "train_txt", "test_img", "test_txt")
LAYOUT_B = ("I_tr", "T_tr", "L_tr", "I_te", "T_te", "L_te")
B_SUFFIXES = (".mat", ".h5", ".hdf5")
MAX_CLASSES = 10_000  # class ids beyond this are a broken file, not a dataset (one-hot would need n x id bytes)


@dataclass
class StandardParams:
    root: str | None = spec(None, help="data folder (or layout-B file); else env BENCH_DATA_<NAME>, "
                                       "$BENCH_DATA/<name>, ~/.config/bench/data.yaml")
    label_embeddings: str = spec("auto", help="label embeddings: auto (glove file, else minilm if installed, "
                                              "else random), glove, minilm, random, onehot",
                                 choices=labelemb.MODES)
    embedding_seed: int = spec(0, help="seed of the random label embeddings", low=0)


def _label_ids_to_multihot(path: Path, key: str, ids: np.ndarray, c: int | None,
                           base: int | None = None) -> tuple[np.ndarray, int]:
    """One-hot rows from class ids; `base` 0 or 1 (MATLAB) is inferred from the smallest id when not given."""
    ids = np.asarray(ids).reshape(-1)
    if ids.size and not np.all(np.equal(np.mod(ids, 1), 0)):
        raise DataError(f"{path}: key '{key}' should hold integer class ids, found {ids[np.mod(ids, 1) != 0][0]!r}")
    ids = ids.astype(np.int64)
    if base is None:
        base = 0 if ids.size == 0 or ids.min() == 0 else 1  # MATLAB ids are usually 1-based
    ids = ids - base
    c = int(ids.max(initial=0)) + 1 if c is None else c
    if c > MAX_CLASSES:
        raise DataError(f"{path}: key '{key}' has class id {int(ids.max()) + base}, implying {c} classes (at most "
                        f"{MAX_CLASSES}); expected class ids 0..C-1 or 1..C")
    if ids.size and (ids.min() < 0 or ids.max() >= c):
        bad = int(ids.min() if ids.min() < 0 else ids.max()) + base
        raise DataError(f"{path}: key '{key}' has class id {bad} outside {base}..{c - 1 + base}")
    out = np.zeros((ids.size, c), dtype=np.uint8)
    out[np.arange(ids.size), ids] = 1
    return out, c


class StandardDataset(Dataset):
    """Base of the standard-benchmark plugins: subclasses set name, description, KNOWN_LABELS."""

    Params = StandardParams
    KNOWN_LABELS: ClassVar[tuple[str, ...]] = ()

    # ---- where the files are -------------------------------------------------------------
    def root(self) -> tuple[Path | None, str]:
        """The dataset folder (or layout-B file) and where it was configured."""
        return find_root(self.name, self.params.root)

    def layout(self, root: Path) -> tuple[str, Path]:
        """('A', folder) or ('B', file); DataError naming what was looked for otherwise."""
        if root.is_file():
            return "B", root
        if not root.is_dir():
            raise DataError(f"{self.name}: {root} does not exist")
        if any((root / f"{stem}.mat").is_file() for stem in LAYOUT_A + ("train_lab", "train_img_lab")):
            return "A", root
        candidates = sorted(p for p in root.iterdir() if p.suffix.lower() in B_SUFFIXES and p.is_file())
        for path in candidates:
            try:
                if "I_tr" in mat_keys(path):
                    return "B", path
            except DataError:
                continue
        raise DataError(f"{self.name}: {root} has neither layout A (train_img.mat, train_txt.mat, train_lab.mat, "
                        "test_*.mat) nor a layout-B file (.mat/.h5 with I_tr, T_tr, L_tr, I_te, T_te, L_te)")

    def missing(self) -> str | None:
        root, source = self.root()
        if root is None:
            return f"{self.name}: data folder not set; {how_to_provide(self.name)}"
        if not root.exists():
            return f"{self.name}: {root} (from {source}) does not exist; {how_to_provide(self.name)}"
        try:
            kind, where = self.layout(root)
        except DataError as exc:
            return str(exc)
        if kind == "A":
            absent = [f"{s}.mat" for s in LAYOUT_A if not (where / f"{s}.mat").is_file()]
            for split in ("train", "test"):
                if not (where / f"{split}_lab.mat").is_file() and not (where / f"{split}_img_lab.mat").is_file():
                    absent.append(f"{split}_lab.mat")
            if absent:
                return f"{self.name}: {where} lacks {', '.join(absent)} (layout A)"
        return None

    def problems(self) -> list[str]:
        """Every problem found (each file and key checked on its own), for `bench data check`; [] if it loads."""
        problem = self.missing()
        if problem and " lacks " not in problem:  # no folder or no layout: nothing more to check
            return [problem]
        root, _source = self.root()
        assert root is not None
        kind, where = self.layout(root)
        found = [problem] if problem else []
        if kind == "B":
            try:
                self._read_b(where, {"coerced_float64": []})
            except DataError as exc:
                found.append(str(exc))
            return found
        info: dict[str, Any] = {"coerced_float64": []}
        for split in ("train", "test"):
            rows = None
            for part in ("img", "txt", "lab"):
                path, key = where / f"{split}_{part}.mat", f"{split}_{part}"
                if not path.is_file():
                    continue
                try:
                    arr = read_mat(path, [key])[key]
                    if part == "lab":
                        self._labels(path, key, arr, rows if rows is not None else len(arr), None)
                    else:
                        arr = self._features(path, key, arr, info, rows=rows)
                        rows = arr.shape[0] if rows is None else rows
                except DataError as exc:
                    found.append(str(exc))
        if not found:
            try:
                self.load()
            except DataError as exc:
                found.append(str(exc))
        return found

    # ---- loading -----------------------------------------------------------------------------
    def load(self) -> CrossModalData:
        problem = self.missing()
        if problem:
            raise DataError(problem)
        root, source = self.root()
        assert root is not None
        kind, where = self.layout(root)
        info: dict[str, Any] = {"source": f"{where} ({source})", "layout": kind, "coerced_float64": []}
        parts = self._read_a(where, info) if kind == "A" else self._read_b(where, info)
        image = np.concatenate([p[0] for p in parts.values()])
        text = np.concatenate([p[1] for p in parts.values()])
        labels = np.concatenate([p[2] for p in parts.values()])
        split, start = {}, 0
        for key, p in parts.items():
            split[key] = np.arange(start, start + len(p[0]))
            start += len(p[0])
        info["rows"] = {k: int(len(v)) for k, v in split.items()}
        c = labels.shape[1]
        if len(self.KNOWN_LABELS) == c:
            names = list(self.KNOWN_LABELS)
        else:
            names = [f"label_{i:02d}" for i in range(c)]
            info["label_names"] = (f"generic names: the files have {c} labels, the documented {self.name} list "
                                   f"has {len(self.KNOWN_LABELS)}")
        extras = self._read_adj(where, c) if kind == "A" else {}
        glove, glove_hint = (self._read_glove(where, c) if kind == "A" else (None, ""))
        emb, emb_source = labelemb.resolve(names, self.params.label_embeddings, glove=glove, glove_hint=glove_hint,
                                           seed=self.params.embedding_seed, cache_dir=self.cache_dir)
        if not info["coerced_float64"]:
            info.pop("coerced_float64")
        else:
            info["coerced_float64"] = "float64 -> float32: " + ", ".join(info["coerced_float64"])
        return make_data(self.name, image, text, labels, names, label_embeddings=emb,
                         label_embedding_source=emb_source, predefined_split=split, extras=extras, info=info)

    def _features(self, path: Path, key: str, arr: np.ndarray, info: dict, rows: int | None = None,
                  dim: int | None = None) -> np.ndarray:
        """Validate one feature/label array: 2-D, numeric, finite, expected rows and columns."""
        arr = np.asarray(arr)
        if arr.ndim != 2:
            raise DataError(f"{path}: key '{key}' has shape {arr.shape}; expected 2-D (items, features)")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise DataError(f"{path}: key '{key}' has non-numeric dtype {arr.dtype}; expected numbers")
        if rows is not None and arr.shape[0] != rows:
            raise DataError(f"{path}: key '{key}' has {arr.shape[0]} rows, expected {rows} "
                            "(one per item, matching the image features)")
        if dim is not None and arr.shape[1] != dim:
            raise DataError(f"{path}: key '{key}' has {arr.shape[1]} columns, expected {dim} "
                            "(as in the training split)")
        if np.issubdtype(arr.dtype, np.floating):
            bad = ~np.isfinite(arr)
            if bad.any():
                row = int(np.nonzero(bad)[0][0])
                raise DataError(f"{path}: key '{key}' has {int(bad.sum())} NaN/inf values (first in row {row}); "
                                "expected finite features")
        if arr.dtype == np.float64:
            info["coerced_float64"].append(key)
        return arr.astype(np.float32)

    def _labels(self, path: Path, key: str, arr: np.ndarray, rows: int, c: int | None) -> np.ndarray:
        arr = np.asarray(arr)
        if arr.ndim != 2:
            raise DataError(f"{path}: key '{key}' has shape {arr.shape}; expected (items, labels) multi-hot")
        if arr.shape[0] != rows:
            raise DataError(f"{path}: key '{key}' has {arr.shape[0]} rows, expected {rows} (one per item)")
        if c is not None and arr.shape[1] != c:
            raise DataError(f"{path}: key '{key}' has {arr.shape[1]} label columns, expected {c} (as in training)")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise DataError(f"{path}: key '{key}' has non-numeric dtype {arr.dtype}; expected a 0/1 multi-hot matrix")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DataError(f"{path}: key '{key}' has NaN/inf labels; expected 0/1")
        vals = np.unique(arr)
        if not np.isin(vals, (0, 1)).all():
            bad = vals[~np.isin(vals, (0, 1))][0].item()
            raise DataError(f"{path}: key '{key}' has label value {bad:g}; expected a 0/1 multi-hot matrix")
        return arr.astype(np.uint8)

    def _read_a(self, folder: Path, info: dict) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        dims: tuple[int, int] | None = None
        c: int | None = None
        base = 0
        for split in ("train", "test"):
            ipath, tpath = folder / f"{split}_img.mat", folder / f"{split}_txt.mat"
            img = self._features(ipath, f"{split}_img", read_mat(ipath, [f"{split}_img"])[f"{split}_img"], info,
                                 dim=None if dims is None else dims[0])
            n = img.shape[0]
            txt = self._features(tpath, f"{split}_txt", read_mat(tpath, [f"{split}_txt"])[f"{split}_txt"], info,
                                 rows=n, dim=None if dims is None else dims[1])
            lpath = folder / f"{split}_lab.mat"
            if lpath.is_file():
                key = f"{split}_lab"
            else:
                lpath, key = folder / f"{split}_img_lab.mat", f"{split}_img_lab"
                info["labels"] = "single-label class ids (DSCMR variant) converted to one-hot"
            raw = read_mat(lpath, [key])[key]
            if key.endswith("img_lab"):
                raw = np.asarray(raw)
                if raw.ndim != 2 or raw.shape[1] != 1:
                    raise DataError(f"{lpath}: key '{key}' has shape {raw.shape}; expected ({n}, 1) class ids")
                if raw.shape[0] != n:
                    raise DataError(f"{lpath}: key '{key}' has {raw.shape[0]} rows, expected {n} (one per item)")
                if c is None:  # the class count and id base must cover both splits
                    other = folder / f"{'test' if split == 'train' else 'train'}_img_lab.mat"
                    ids = [raw.reshape(-1)]
                    if other.is_file():
                        ids.append(np.asarray(read_mat(other, [other.stem])[other.stem]).reshape(-1))
                    allids = np.concatenate(ids)
                    if not np.issubdtype(allids.dtype, np.number) or not np.isfinite(allids).all():
                        raise DataError(f"{lpath}: key '{key}' should hold finite integer class ids")
                    base = 0 if allids.min() == 0 else 1
                    c = int(allids.max()) + 1 - base
                    if c > MAX_CLASSES or allids.min() < 0:
                        raise DataError(f"{lpath}: class ids span {allids.min():g}..{allids.max():g}, not 0..C-1 or "
                                        f"1..C with C at most {MAX_CLASSES}; fix the label file")
                    info["labels"] += f" ({base}-based ids, {c} classes)"
                lab, c = _label_ids_to_multihot(lpath, key, raw, c, base)
            else:
                lab = self._labels(lpath, key, raw, n, c)
                c = lab.shape[1]
            dims = (img.shape[1], txt.shape[1])
            parts[split] = (img, txt, lab)
        return parts

    def _read_b(self, path: Path, info: dict) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        keys = mat_keys(path)
        optional = ("I_db", "T_db", "L_db")
        present_db = [k for k in optional if k in keys]
        if present_db and len(present_db) != 3:
            raise DataError(f"{path}: has {', '.join(present_db)} but not all of I_db, T_db, L_db")
        arrays = read_mat(path, list(LAYOUT_B), optional=optional)
        parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        dims: tuple[int, int] | None = None
        c: int | None = None
        for split, suffix in (("train", "tr"), ("test", "te"), ("db", "db")):
            if f"I_{suffix}" not in arrays:
                continue
            img = self._features(path, f"I_{suffix}", arrays[f"I_{suffix}"], info,
                                 dim=None if dims is None else dims[0])
            n = img.shape[0]
            txt = self._features(path, f"T_{suffix}", arrays[f"T_{suffix}"], info, rows=n,
                                 dim=None if dims is None else dims[1])
            lab = self._labels(path, f"L_{suffix}", arrays[f"L_{suffix}"], n, c)
            c, dims = lab.shape[1], (img.shape[1], txt.shape[1])
            parts[split] = (img, txt, lab)
        return parts

    def _read_adj(self, folder: Path, c: int) -> dict[str, np.ndarray]:
        path = folder / "adj.mat"
        if not path.is_file():
            return {}
        arrays = read_mat(path, ["adj"], optional=("nums",))
        adj = np.asarray(arrays["adj"], dtype=np.float64)
        if adj.shape != (c, c):
            raise DataError(f"{path}: key 'adj' has shape {adj.shape}, expected ({c}, {c}) label co-occurrence counts")
        if not np.isfinite(adj).all():
            raise DataError(f"{path}: key 'adj' has NaN/inf values; expected counts")
        out = {"adj": adj}
        if "nums" in arrays:
            nums = np.asarray(arrays["nums"], dtype=np.float64).reshape(-1)
            if nums.shape != (c,):
                raise DataError(f"{path}: key 'nums' has {nums.size} values, expected {c} label counts")
            out["nums"] = nums
        return out

    def _read_glove(self, folder: Path, c: int) -> tuple[np.ndarray | None, str]:
        path = folder / f"{self.name}-inp-glove6B.mat"
        if not path.is_file():
            hits = sorted(folder.glob("*glove*.mat"))
            if not hits:
                return None, str(path)
            path = hits[0]
        inp = np.asarray(read_mat(path, ["inp"])["inp"])
        if inp.ndim != 2 or inp.shape[0] != c:
            raise DataError(f"{path}: key 'inp' has shape {inp.shape}, expected ({c}, 300): one row per label")
        if not np.isfinite(inp).all():
            raise DataError(f"{path}: key 'inp' has NaN/inf values")
        return inp, str(path)
