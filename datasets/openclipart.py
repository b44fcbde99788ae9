"""Open Clip Art Library 0.18 (Debian openclipart-png + openclipart-svg): real multi-label image/text data.

Image view: hand-crafted PNG features; text view: TF-IDF of title + description + file-name
words; labels: a curated concept list from category folders and dc:subject keywords (see
datasets/common/openclipart_prep.py and docs/datasets.md). Features are prepared once with
`bench data prepare openclipart [--from DIR]` and cached under cache_dir, keyed by content.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import labelemb
from bench.data import CrossModalData, make_data
from bench.dataset import Dataset
from bench.errors import DataError
from bench.params import spec
from bench.registry import register_dataset

from .common import openclipart_prep as prep
from .common.locate import find_root


@dataclass
class OpenClipartParams:
    root: str | None = spec(None, help="unpacked tree (holding png/ and svg/, or usr/share/openclipart); default: "
                                       "env BENCH_DATA_OPENCLIPART, $BENCH_DATA/openclipart, or what prepare fetched")
    min_df: int = spec(3, help="text vocabulary: keep words found in at least this many items", low=1)
    max_vocab: int = spec(2000, help="text vocabulary: at most this many most frequent words", low=1)
    label_embeddings: str = spec("auto", help="auto (minilm if installed, else random), minilm, random, onehot",
                                 choices=labelemb.MODES)
    embedding_seed: int = spec(0, help="seed of the random label embeddings")


@register_dataset
class OpenClipart(Dataset):
    name = "openclipart"
    description = "Open Clip Art Library 0.18: PNG features / title+description TF-IDF / curated concepts"
    Params = OpenClipartParams

    def tree(self) -> Path | None:
        """The unpacked collection: param / env / config, else the copy `prepare` downloaded."""
        root, _source = find_root(self.name, self.params.root)
        if root is not None:
            return prep.find_tree(root)
        return prep.find_tree(self.cache_dir / "download" / "tree")

    def features_file(self) -> tuple[Path | None, str]:
        """(prepared file or None, why not): the file for the tree's content key, else the latest prepared one."""
        root, source = find_root(self.name, self.params.root)
        if root is not None and prep.find_tree(root) is None:
            return None, f"{root} (from {source}) holds neither png/ and svg/ nor usr/share/openclipart/"
        tree = self.tree()
        if tree is not None:
            key = prep.content_key(tree)
            path = prep.cache_file(self.cache_dir, key)
            if path.is_file():
                return path, ""
            return None, f"features of {tree} are not prepared (or are stale)"
        latest = self.cache_dir / "latest.json"
        if latest.is_file():
            meta = json.loads(latest.read_text())
            path = self.cache_dir / meta.get("file", "")
            if meta.get("prep_version") == prep.PREP_VERSION and path.is_file():
                return path, ""
            return None, "prepared features are from another PREP_VERSION"
        return None, "features are not prepared"

    def missing(self) -> str | None:
        path, why = self.features_file()
        if path is None:
            return (f"openclipart: {why}; run `bench data prepare openclipart` (fetches the Debian packages "
                    "openclipart-png/-svg, ~156 MB) or `bench data prepare openclipart --from DIR`")
        return None

    def prepare(self, source: Path | None = None, log: Callable[[str], None] = print,
                workers: int | None = None) -> Path:
        """Fetch (unless `source` or a configured tree is given) and compute the cached features."""
        if source is not None:
            tree = prep.find_tree(Path(source))
            if tree is None:
                raise DataError(f"openclipart: {source} holds neither png/ and svg/ nor usr/share/openclipart/")
        else:
            tree = self.tree() or prep.fetch(self.cache_dir / "download", log=log)
        return prep.prepare(tree, self.cache_dir, workers=workers, log=log)

    def load(self) -> CrossModalData:
        path, why = self.features_file()
        if path is None:
            raise DataError(self.missing() or why)
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        stats = json.loads(str(arrays["stats"]))
        text, cols = prep.tfidf(arrays["text_indptr"], arrays["text_indices"], arrays["text_counts"],
                                len(arrays["vocab"]), self.params.min_df, self.params.max_vocab)
        names = [str(x) for x in arrays["label_names"]]
        emb, source = labelemb.resolve(names, self.params.label_embeddings, seed=self.params.embedding_seed,
                                       cache_dir=self.cache_dir)
        failures = stats.get("image_failures", {})
        info = {"source": stats.get("source", ""), "cache": str(path), "prep_seconds": stats.get("seconds"),
                "distinct_pngs": stats.get("distinct_pngs"), "image_failures": failures,
                "text_vocabulary": f"{len(cols)} words (min_df={self.params.min_df}, of {stats.get('vocabulary')})",
                "text_notes": stats.get("text", {})}
        return make_data(self.name, arrays["image"], text, arrays["labels"], names, label_embeddings=emb,
                         label_embedding_source=source, info=info)
