"""Preparation of the Open Clip Art Library 0.18 (Debian openclipart-png / openclipart-svg).

Unit of data: one distinct PNG (symlinked copies in other category folders are merged into one
item whose categories are the union, so no image sits in both train and test).
- image view: colour histogram of the foreground (4x4x4 RGB bins), foreground fraction,
  gradient-orientation histograms (8 bins over 4x4 cells), a 16x16 grey thumbnail; computed on
  a copy composited on white and shrunk to at most 128 px.
- text view: term counts of title + description + file-name words (TF-IDF is applied at load).
- labels: the curated CONCEPTS below, matched on category folder names and dc:subject keywords;
  anything else (themes, "hash", "magick", "computer", "icons", author names) is ignored.
Features are cached in `cache_dir/features-<key>.npz`, key = PREP_VERSION + every file's
path, size, mtime and link target. Bad files are counted, never fatal.
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

PREP_VERSION = 1
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
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
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


def image_features(path: str) -> tuple[np.ndarray | None, str]:
    """(feature vector, '') or (None, reason) for one PNG; never raises."""
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
def cache_file(cache_dir: Path, key: str) -> Path:
    """The prepared-feature file for a content key."""
    return Path(cache_dir) / f"features-{key}.npz"


def prepare(tree: Path, cache_dir: Path, workers: int | None = None, log: Callable[[str], None] = print) -> Path:
    """Compute and cache features of the tree; returns the cache file (reused when already there)."""
    started = time.monotonic()
    items, key = scan(tree)
    out = cache_file(cache_dir, key)
    if out.is_file():
        log(f"up to date: {out}")
        return out
    if not items:
        raise DataError(f"openclipart: no PNG files under {tree / 'png'}")
    log(f"{len(items)} distinct PNGs in {tree}")
    counts: Counter[str] = Counter()
    texts, label_rows, keywords_seen = [], [], Counter()
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
        texts.append(tokens(" ".join(title_parts + [filename_words(it.rel)])))
        label_rows.append(concepts_of(it.folders, kws))
        keywords_seen.update({k.lower() for k in kws if k})
    workers = workers or min(2, os.cpu_count() or 1)
    feats = np.zeros((len(items), IMAGE_DIM), np.float32)
    ok = np.zeros(len(items), bool)
    paths = [str(it.png) for it in items]
    if workers > 1 and "fork" in get_all_start_methods():
        # fork: the plugin package is registered in sys.modules only, so a spawned child could not import it
        with get_context("fork").Pool(workers) as pool:
            results = pool.imap(image_features, paths, chunksize=16)
            for i, (vec, why) in enumerate(results):
                feats[i], ok[i] = (vec, True) if vec is not None else (0.0, False)
                counts[f"png {why}"] += vec is None
    else:
        for i, p in enumerate(paths):
            vec, why = image_features(p)
            feats[i], ok[i] = (vec, True) if vec is not None else (0.0, False)
            counts[f"png {why}"] += vec is None
    vocab = sorted({t for toks in texts for t in toks})
    index = {t: j for j, t in enumerate(vocab)}
    indptr, indices, data = [0], [], []
    for toks in texts:
        c = Counter(index[t] for t in toks)
        cols = sorted(c)
        indices += cols
        data += [c[j] for j in cols]
        indptr.append(len(indices))
    labels = np.zeros((len(items), len(CONCEPT_NAMES)), np.uint8)
    for i, row in enumerate(label_rows):
        labels[i, row] = 1
    keep = ok
    stats = {"prep_version": PREP_VERSION, "distinct_pngs": len(items), "paths": sum(len(it.folders) for it in items),
             "image_failures": {k[4:]: v for k, v in counts.items() if k.startswith("png ") and v},
             "text": {k: v for k, v in counts.items() if not k.startswith("png ") and v},
             "no_concept": int((labels[keep].sum(1) == 0).sum()), "vocabulary": len(vocab),
             "seconds": round(time.monotonic() - started, 1), "workers": workers, "source": str(tree)}
    ind = np.asarray(indptr, np.int64)
    row_keep = np.flatnonzero(keep)
    # keep only rows whose image was readable: re-slice the CSR text counts accordingly
    new_indptr, new_idx, new_data = [0], [], []
    for r in row_keep:
        new_idx.append(np.asarray(indices[ind[r]:ind[r + 1]], np.int32))
        new_data.append(np.asarray(data[ind[r]:ind[r + 1]], np.int32))
        new_indptr.append(new_indptr[-1] + int(ind[r + 1] - ind[r]))
    arrays = {
        "image": feats[keep], "labels": labels[keep], "label_names": np.array(CONCEPT_NAMES),
        "text_indptr": np.asarray(new_indptr, np.int64),
        "text_indices": np.concatenate(new_idx) if new_idx else np.zeros(0, np.int32),
        "text_counts": np.concatenate(new_data) if new_data else np.zeros(0, np.int32),
        "vocab": np.array(vocab if vocab else [""]), "ids": np.array([it.rel for it in items])[keep],
        "stats": np.array(json.dumps(stats)),
    }
    atomic_savez(out, arrays)
    latest = Path(cache_dir) / "latest.json"
    tmp = latest.with_name(f".latest-{os.getpid()}.json")
    tmp.write_text(json.dumps({"key": key, "file": out.name, "source": str(tree), "prep_version": PREP_VERSION}))
    os.replace(tmp, latest)
    log(f"wrote {out} ({int(keep.sum())} items, {stats['seconds']} s)")
    return out


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to a temporary file in the same folder, then rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def tfidf(indptr: np.ndarray, indices: np.ndarray, counts: np.ndarray, n_vocab: int, min_df: int,
          max_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """(dense L2-normalised TF-IDF (n, V'), kept vocabulary columns): terms in >= min_df documents,
    the max_vocab most frequent; tf = 1 + log(count), idf = log((1 + n) / (1 + df)) + 1."""
    from scipy.sparse import csr_matrix

    n = len(indptr) - 1
    m = csr_matrix((counts.astype(np.float64), indices, indptr), shape=(n, n_vocab))
    df = np.bincount(indices, minlength=n_vocab)
    cols = np.flatnonzero(df >= min_df)
    cols = cols[np.argsort(-df[cols], kind="stable")[:max_vocab]]
    cols.sort()
    m = m[:, cols].tocsr()
    m.data = 1.0 + np.log(m.data)
    m = m.multiply(np.log((1 + n) / (1 + df[cols])) + 1.0).tocsr()
    dense = np.asarray(m.todense(), dtype=np.float32)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    return dense / np.maximum(norms, 1e-12), cols
