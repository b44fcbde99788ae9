"""Open Clip Art Library 0.18 (Debian openclipart-png + openclipart-svg): real multi-label image/text data.

Image view: ImageNet CNN features (EfficientNet-Lite0, `image_features=cnn`, the default when
`bench[vision]` is installed) or hand-crafted PNG features (`handcrafted`); text view: TF-IDF
(scikit-learn) of title + description + file-name words, or MiniLM sentence embeddings
(`text_features=minilm`); labels: a curated concept list from category folders and dc:subject
keywords (see datasets/common/openclipart_prep.py and docs/datasets.md). Features are prepared
once with `bench data prepare openclipart [--from DIR] [--clean]` and cached under cache_dir,
keyed by content and feature kind.
"""

from __future__ import annotations

import json
import shutil
import zipfile
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
    image_features: str = spec("auto", help="cnn (EfficientNet-Lite0 ImageNet, 1280-d; pip install bench[vision]), "
                                            "handcrafted (449-d), or auto (cnn when installed, else handcrafted)",
                               choices=("auto", *prep.IMAGE_KINDS))
    text_features: str = spec("tfidf", help="tfidf (scikit-learn, vocabulary by min_df / max_vocab) or minilm "
                                            "(all-MiniLM-L6-v2 sentence embeddings, 384-d; pip install bench[minilm])",
                              choices=prep.TEXT_KINDS)
    min_df: int = spec(3, help="text vocabulary: keep words found in at least this many items", low=1)
    max_vocab: int = spec(2000, help="text vocabulary: at most this many words, highest document frequency first",
                          low=1)
    label_embeddings: str = spec("auto", help="auto (minilm if installed, else random), minilm, random, onehot",
                                 choices=labelemb.MODES)
    embedding_seed: int = spec(0, help="seed of the random label embeddings", low=0)


@register_dataset
class OpenClipart(Dataset):
    name = "openclipart"
    description = "Open Clip Art Library 0.18: PNG CNN or hand-crafted features / title+description text / concepts"
    Params = OpenClipartParams

    def tree(self) -> Path | None:
        """The unpacked collection: param / env / config, else the copy `prepare` downloaded."""
        root, _source = find_root(self.name, self.params.root)
        if root is not None:
            return prep.find_tree(root)
        return prep.find_tree(self.download_dir() / "tree")

    def download_dir(self) -> Path:
        return self.cache_dir / "download"

    def kinds(self) -> tuple[str, str, str]:
        """(image kind, text kind, note): image_features=auto resolved; note says how to get CNN features."""
        image, note = prep.resolve_image_kind(self.params.image_features)
        return image, self.params.text_features, note

    def cache_key(self) -> tuple[str | None, str]:
        """(content key of the tree in use, or of the last prepared tree when none is found; else None, why)."""
        root, source = find_root(self.name, self.params.root)
        if root is not None and prep.find_tree(root) is None:
            return None, f"{root} (from {source}) holds neither png/ and svg/ nor usr/share/openclipart/"
        tree = self.tree()
        if tree is not None:
            return prep.content_key(tree), ""
        latest = self.cache_dir / "latest.json"
        if latest.is_file():
            try:
                meta = json.loads(latest.read_text())
            except (OSError, ValueError):
                meta = None
            if not isinstance(meta, dict):
                return None, f"the cache index {latest} is corrupt (delete it and prepare again)"
            if meta.get("prep_version") == prep.PREP_VERSION and meta.get("key"):
                return str(meta["key"]), ""
            return None, "prepared features are from another version of bench"
        return None, "features are not prepared"

    def feature_files(self) -> tuple[dict[str, Path] | None, str]:
        """({'items', 'image'[, 'text']}: cached files for the tree and the feature kinds) or (None, why not)."""
        key, why = self.cache_key()
        if key is None:
            return None, why
        image, text, _note = self.kinds()
        files = {"items": prep.items_file(self.cache_dir, key), "image": prep.image_file(self.cache_dir, key, image)}
        text_path = prep.text_file(self.cache_dir, key, text)
        if text_path is not None:
            files["text"] = text_path
        absent = [k for k, f in files.items() if not f.is_file()]
        if absent:
            what = {"items": "labels and texts", "image": f"{image} image features", "text": f"{text} text features"}
            where = f"of {self.tree()}" if self.tree() is not None else "of the last prepared tree"
            return None, f"{' and '.join(what[k] for k in absent)} {where} are not prepared (or are stale)"
        return files, ""

    def prepare_command(self) -> str:
        image, text, _note = self.kinds()
        extra = "" if self.params.image_features == "auto" else f" --param image_features={image}"
        extra += "" if text == "tfidf" else f" --param text_features={text}"
        return f"bench data prepare openclipart{extra}"

    def missing(self) -> str | None:
        files, why = self.feature_files()
        if files is None:
            return (f"openclipart: {why}; run `{self.prepare_command()}` (fetches the Debian packages "
                    "openclipart-png/-svg, ~156 MB) or add `--from DIR`")
        return None

    def prepare(self, source: Path | None = None, log: Callable[[str], None] = print,
                workers: int | None = None, device: str = "auto", clean: bool = False) -> Path:
        """Fetch (unless `source`, a configured tree, or cached features make it unnecessary) and compute the
        cached features; report what is kept on disk; `clean` removes the downloaded tree afterwards."""
        if source is not None:
            tree = prep.find_tree(Path(source))
            if tree is None:
                raise DataError(f"openclipart: {source} holds neither png/ and svg/ nor usr/share/openclipart/")
        else:
            tree = self.tree()
            if tree is None:
                files, _why = self.feature_files()
                if files is not None:  # features cached, tree already cleaned: nothing to fetch
                    log(f"up to date: {files['image']} (the downloaded tree was removed; features are cached)")
                    self.report_disk(tree=None, clean=clean, log=log)
                    return files["image"]
                tree = prep.fetch(self.download_dir(), log=log)
        image, text, _note = self.kinds()
        out = prep.prepare(tree, self.cache_dir, image_features=self.params.image_features, text_features=text,
                           workers=workers, device=device, log=log)
        self.report_disk(tree=tree, clean=clean, log=log)
        return out

    def report_disk(self, tree: Path | None, clean: bool, log: Callable[[str], None]) -> None:
        """Say what stays on disk (paths and sizes); with `clean`, first drop the downloaded .debs and tree."""
        download = self.download_dir()
        ours = tree is None or download.resolve() in tree.resolve().parents
        if clean:
            if not ours:
                log(f"--clean: nothing removed: {tree} is not a download of bench (it is yours; it stays)")
            elif download.exists():
                size = prep.disk_usage(download)
                shutil.rmtree(download)
                log(f"removed {download} ({prep.human(size)}): the downloaded .deb files and unpacked tree")
        rows = []
        for path, what in ((download / "debs", "downloaded .deb packages"), (download / "tree", "unpacked tree")):
            if path.exists():
                rows.append((path, what))
        if tree is not None and not ours:
            rows.append((tree, "your unpacked tree (read, never modified)"))
        latest = self.cache_dir / "latest.json"
        key = json.loads(latest.read_text()).get("key", "") if latest.is_file() else ""
        for f in sorted(self.cache_dir.glob("*.np[zy]")):
            if f.name.startswith("label-emb-"):
                rows.append((f, "label embeddings"))
            elif key and f.stem.endswith(f"-{key}"):
                rows.append((f, "prepared features (runs load these)"))
            else:
                rows.append((f, "not for the tree last prepared (an older tree or version of bench): "
                                "delete unless you still use that tree"))
        log("kept on disk:")
        for path, what in rows:
            log(f"  {path}  {prep.human(prep.disk_usage(path))}  {what}")
        if ours and download.exists():
            log(f"  (`bench data prepare openclipart --clean` removes {download}; the cached features stay, "
                "other feature kinds would then download again)")

    def load(self) -> CrossModalData:
        files, why = self.feature_files()
        if files is None:
            raise DataError(self.missing() or why)
        try:
            items = prep.read_items(files["items"])
            with np.load(files["image"], allow_pickle=False) as z:
                image, ok, image_stats = z["image"], z["ok"], json.loads(str(z["stats"]))
            n = len(items["labels"])
            if len(image) != n or len(ok) != n:
                raise DataError(f"openclipart: {files['image'].name} holds {len(image)} rows, "
                                f"{files['items'].name} {n}; run `{self.prepare_command()}` again")
            keep = np.flatnonzero(ok)
            _image_kind, text_kind, note = self.kinds()
            if text_kind == "tfidf":
                docs = [items["tokens"][i] for i in keep]
                text, vocab = prep.tfidf(docs, self.params.min_df, self.params.max_vocab)
                text_note = (f"TF-IDF (scikit-learn), {len(vocab)} words (min_df={self.params.min_df}, "
                             f"max_vocab={self.params.max_vocab})")
            else:
                emb = np.load(files["text"], allow_pickle=False)
                if len(emb) != n:
                    raise DataError(f"openclipart: {files['text'].name} holds {len(emb)} rows, expected {n}; "
                                    f"run `{self.prepare_command()}` again")
                text, text_note = emb[keep], f"all-MiniLM-L6-v2 sentence embeddings ({emb.shape[1]}-d)"
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"openclipart: the prepared cache is unreadable ({type(exc).__name__}: truncated or "
                            f"corrupt); run `{self.prepare_command()}` again") from None
        names = items["label_names"]
        emb, source = labelemb.resolve(names, self.params.label_embeddings, seed=self.params.embedding_seed,
                                       cache_dir=self.cache_dir)
        stats = items["stats"]
        info = {"source": stats.get("source", ""), "cache": str(files["image"]),
                "image_features": image_stats.get("name", "") + (f" ({note})" if note else ""),
                "text_features": text_note, "prep_seconds": {"items": stats.get("seconds"),
                                                             "image": image_stats.get("seconds")},
                "distinct_pngs": stats.get("distinct_pngs"), "image_failures": image_stats.get("image_failures", {}),
                "text_notes": stats.get("text", {})}
        return make_data(self.name, image[keep], text, items["labels"][keep], names, label_embeddings=emb,
                         label_embedding_source=source, info=info)

    def preview(self, i: int) -> dict[str, str] | None:
        """Item `i` of the loaded data: its title and keywords, and its PNG while the unpacked tree is
        kept (`bench data prepare --clean` removes it; the text alone is shown then)."""
        if getattr(self, "_rows", None) is None:
            files, _why = self.feature_files()
            if files is None:
                return None
            items = prep.read_items(files["items"])
            with np.load(files["image"], allow_pickle=False) as z:
                keep = np.flatnonzero(z["ok"])
            labelled = items["labels"][keep].sum(1) > 0  # make_data drops unlabelled rows
            self._rows, self._items, self._tree = keep[labelled], items, self.tree()
        if not 0 <= i < len(self._rows):
            return None
        item = int(self._rows[i])
        out = {"text": self._items["raw_text"][item]}
        png = self._tree / "png" / f"{self._items['ids'][item]}.png" if self._tree is not None else None
        if png is not None and png.is_file():
            out["image"] = str(png)
        return out
