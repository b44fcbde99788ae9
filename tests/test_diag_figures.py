"""bench.diag_figures draws what the diagnostics computed: the points, bars, colours and frames."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from bench.diag_figures import (
    _RELEVANT,
    gallery_figure,
    label_ap_figure,
    label_delta_figure,
    save_figure,
    tsne_figure,
)
from bench.diagnostics import GalleryHit, GalleryQuery, LabelAP, LabelDelta, TsneMaps, dominant_label

NAMES = ["animal", "bird", "car", "flag"]


def _label_ap(seed: int) -> LabelAP:
    rng = np.random.default_rng(seed)
    return LabelAP(i2t=rng.random(4), t2i=rng.random(4), count=np.array([40, 20, 10, 5]),
                   frequency=np.array([0.4, 0.2, 0.1, 0.05]))


def test_save_figure_writes_png_and_pdf_and_closes_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig = label_ap_figure({"full": _label_ap(0)}, NAMES)
    paths = save_figure(fig, tmp_path / "figs", "label_ap")
    assert [p.name for p in paths] == ["label_ap.png", "label_ap.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert not plt.fignum_exists(fig.number)


def test_label_ap_figure_plots_each_methods_ap_at_the_label_frequency():
    results = {"full": _label_ap(0), "no_gan": _label_ap(1)}
    fig = label_ap_figure(results, NAMES)
    for ax, side in zip(fig.axes[:2], ("i2t", "t2i")):
        points = [c for c in ax.collections if c.get_label() in results]
        assert [c.get_label() for c in points] == ["full", "no_gan"]
        for scatter in points:
            expected = np.column_stack([results[scatter.get_label()].frequency,
                                        getattr(results[scatter.get_label()], side)])
            assert np.allclose(scatter.get_offsets(), expected)


def test_label_ap_figure_names_the_label_where_methods_differ_most():
    full, variant = _label_ap(0), _label_ap(0)
    variant.i2t[2] -= 0.5  # label "car" is the only one that differs
    fig = label_ap_figure({"full": full, "no_gan": variant}, NAMES, annotate=3)
    assert [t.get_text() for t in fig.axes[0].texts] == ["car"]


def test_label_delta_figure_draws_mean_deltas_in_frequency_order():
    delta = LabelDelta(mean=np.array([0.1, -0.2, 0.05, np.nan]), std=np.array([0.01, 0.02, np.nan, np.nan]),
                       pairs=np.array([3, 3, 1, 0]), seeds=(0, 1, 2))
    frequency = np.array([0.1, 0.4, 0.2, 0.05])
    fig = label_delta_figure({"no_gnn": delta}, frequency, NAMES, full="pgnn")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["bird (40.0%)", "car (20.0%)", "animal (10.0%)"]
    assert np.allclose([bar.get_width() for bar in ax.patches], [-0.2, 0.05, 0.1])


def test_tsne_figure_has_a_panel_per_model_and_colours_items_by_dominant_label():
    rng = np.random.default_rng(0)
    labels = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1], [1, 0, 0, 1]])
    maps = TsneMaps(positions=np.arange(6), coords={m: (rng.random((6, 2)), rng.random((6, 2)))
                                                      for m in ("full", "no_gan", "no_gnn")})
    fig = tsne_figure(maps, labels, NAMES, top=2)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["full", "no_gan", "no_gnn"]
    image_points, text_points = panels[0].collections
    order = np.argsort(np.isin(dominant_label(labels), [0, 3]), kind="stable")  # grey ones drawn first
    assert np.allclose(image_points.get_offsets(), maps.coords["full"][0][order])
    colours = image_points.get_facecolors()[:, :3]
    dominant = dominant_label(labels)[order]
    for a in range(6):
        for b in range(6):
            assert np.allclose(colours[a], colours[b]) == (dominant[a] == dominant[b] or
                                                           (dominant[a] not in (0, 3) and dominant[b] not in (0, 3)))


def _gallery(tmp_path, with_images: bool = True) -> list[GalleryQuery]:
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (30 + 10 * i, 20), (40 * i, 90, 200)).save(path)
        paths.append(str(path))
    preview = (lambda i: {"image": paths[i], "text": f"item {i}"}) if with_images else (lambda i: {"text": f"t{i}"})
    hits = lambda relevant: tuple(GalleryHit(p, p, r, p == 0, preview(p)) for p, r in zip(range(3), relevant))  # noqa: E731
    return [GalleryQuery("t2i", 0, 0, (0, 1), preview(0), {"full": hits([True, False, True]),
                                                            "no_gan": hits([False, True, True])})]


def test_gallery_frames_relevant_hits_green_and_shows_thumbnails(tmp_path):
    fig = gallery_figure(_gallery(tmp_path), "t2i", NAMES)
    hit_axes = [ax for ax in fig.axes if ax.images]
    assert len(hit_axes) == 6  # 2 methods x top 3, each an image
    frames = [to_rgba(ax.spines["top"].get_edgecolor()) == to_rgba(_RELEVANT) for ax in hit_axes]
    assert frames == [True, False, True, False, True, True]
    assert all(ax.images[0].get_array().shape[:2] == (160, 160) for ax in hit_axes)  # padded squares


def test_gallery_figure_shows_the_query_text(tmp_path):
    fig = gallery_figure(_gallery(tmp_path), "t2i", NAMES)
    assert any(t.get_text() == "item 0" for ax in fig.axes for t in ax.texts)


def test_gallery_figure_is_none_without_the_previews_it_needs(tmp_path):
    assert gallery_figure(_gallery(tmp_path, with_images=False), "t2i", NAMES) is None
    assert gallery_figure(_gallery(tmp_path), "i2t", NAMES) is None  # no image queries in it


@pytest.mark.parametrize("bad", ["missing.png", "not_an_image.png"])
def test_gallery_marks_an_unreadable_image_instead_of_failing(tmp_path, bad):
    (tmp_path / "not_an_image.png").write_text("plain text")
    queries = _gallery(tmp_path)
    broken = GalleryHit(1, 1, True, False, {"image": str(tmp_path / bad)})
    hits = {name: (broken, *rest[1:]) for name, rest in queries[0].hits.items()}
    fig = gallery_figure([GalleryQuery("t2i", 0, 0, (0,), queries[0].preview, hits)], "t2i", NAMES)
    assert sum(t.get_text() == "no preview" for ax in fig.axes for t in ax.texts) == 2


def test_a_decompression_bomb_is_shown_as_no_preview_not_a_traceback(tmp_path, monkeypatch):
    # Pillow refuses images over 2 x MAX_IMAGE_PIXELS at open with DecompressionBombError (not an
    # OSError); a threshold of 1,000 pixels makes a 100 x 100 PNG one without writing 180 megapixels
    Image.new("RGBA", (100, 100), (200, 0, 0, 255)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    queries = _gallery(tmp_path)
    bomb = GalleryHit(1, 1, True, False, {"image": str(tmp_path / "bomb.png")})
    hits = {name: (bomb, *rest[1:]) for name, rest in queries[0].hits.items()}
    fig = gallery_figure([GalleryQuery("t2i", 0, 0, (0,), queries[0].preview, hits)], "t2i", NAMES)
    assert sum(t.get_text() == "no preview" for ax in fig.axes for t in ax.texts) == 2


@pytest.mark.parametrize("mode", ["P", "L", "LA", "RGB", "RGBA", "1"])
def test_thumbnails_of_every_mode_are_white_padded_rgb_squares(tmp_path, mode):
    from bench.diag_figures import _thumbnail

    path = tmp_path / f"{mode}.png"
    Image.new("RGBA", (400, 100), (0, 0, 0, 255)).convert(mode).save(path)
    thumb = _thumbnail(str(path), 160)
    assert thumb.shape == (160, 160, 3)
    assert (thumb[0, 0] == 255).all()  # padding above the 160 x 40 picture is white
    assert thumb[80, 80].max() < 30  # the picture itself is black


def test_an_image_over_the_preview_cap_is_not_decoded(tmp_path, monkeypatch):
    import bench.diag_figures as figures

    Image.new("RGB", (300, 200), (0, 0, 0)).save(tmp_path / "big.png")
    monkeypatch.setattr(figures, "MAX_PREVIEW_PIXELS", 300 * 200 - 1)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded an image over the cap"))
    assert figures._thumbnail(str(tmp_path / "big.png")) is None
