"""openclipart: preparing a tiny unpacked tree (PNG features, SVG metadata text, curated concepts, cache)."""

from __future__ import annotations

import importlib
import os
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
    get_dataset("openclipart")
    return importlib.import_module("_bench_plugins.datasets.common.openclipart_prep")


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
    ds = cls(cls.Params(root=str(tree), min_df=1), cache_dir=tmp_path / "cache")
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
    assert data.image.dtype == np.float32 and np.isfinite(data.image).all()


def test_text_uses_title_description_and_file_name_words_in_any_script(prepared):
    ds, _tree, _logs = prepared
    z = np.load(next(ds.cache_dir.glob("features-*.npz")), allow_pickle=False)
    vocab = set(z["vocab"].tolist())
    assert {"owl", "wise", "branch", "äpfel", "birnen", "someone", "oak"} <= vocab
    assert "hash" not in vocab and "author" not in vocab  # keywords and author names are not text


def test_second_prepare_reuses_the_cache_and_a_changed_file_makes_it_stale(prepared):
    ds, tree, _logs = prepared
    logs: list[str] = []
    ds.prepare(log=logs.append, workers=1)
    assert logs[0].startswith("up to date")
    assert ds.missing() is None
    (tree / "svg/people/man_walking.svg").write_text((tree / "svg/people/man_walking.svg").read_text() + " ")
    assert "bench data prepare openclipart" in ds.missing()
    with pytest.raises(DataError, match="bench data prepare openclipart"):
        ds.load()


def test_unprepared_dataset_says_how_to_prepare(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_OPENCLIPART", raising=False)
    monkeypatch.delenv("BENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    message = get_dataset("openclipart")(cache_dir=tmp_path / "cache").missing()
    assert "run `bench data prepare openclipart`" in message


def test_oversized_images_are_skipped_and_counted_with_two_workers(tmp_path, monkeypatch):
    p = prep_module()
    tree = make_tree(tmp_path / "tree")
    _png(tree / "png/animals/birds/huge_bird.png", "RGB", (9, 9, 9), size=(300, 300))
    _svg(tree / "svg/animals/birds/huge_bird.svg", "Huge bird", "", ["bird"])
    monkeypatch.setattr(p, "MAX_PIXELS", 200 * 200)
    out = p.prepare(p.find_tree(tree), tmp_path / "cache", workers=2, log=lambda s: None)
    stats = __import__("json").loads(str(np.load(out, allow_pickle=False)["stats"]))
    assert stats["image_failures"]["oversized"] == 1


def test_tfidf_rows_are_unit_norm_and_respect_min_df():
    p = prep_module()
    indptr = np.array([0, 2, 3, 5])
    indices = np.array([0, 1, 0, 0, 2])
    counts = np.array([2, 1, 1, 1, 3])
    dense, cols = p.tfidf(indptr, indices, counts, 3, min_df=2, max_vocab=10)
    assert cols.tolist() == [0] and np.allclose(np.linalg.norm(dense, axis=1), 1.0)


def test_a_root_without_the_tree_is_named(tmp_path):
    cls = get_dataset("openclipart")
    message = cls(cls.Params(root=str(tmp_path)), cache_dir=tmp_path / "cache").missing()
    assert str(tmp_path) in message and "png/ and svg/" in message
