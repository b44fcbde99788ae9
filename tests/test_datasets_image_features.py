"""EfficientNet-Lite0 image features (datasets/common/image_features.py): the ImageNet network, offline.

Needs the `vision` extra (`pip install -e .[dev,vision]`, which CI installs).
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench.errors import DataError
from bench.registry import get_dataset

CROSSWORD, HONEYCOMB = 918, 599  # ImageNet-1k class indices: "crossword puzzle", "honeycomb"


def module():
    cls = get_dataset("openclipart")
    return sys.modules[cls.__module__].prep.imfeat


def crossword(seed: int, n: int = 13, cell: int = 16) -> Image.Image:
    """A black-and-white crossword grid (random black squares): ImageNet class 'crossword puzzle'."""
    rng = np.random.default_rng(seed)
    side = n * cell + 1
    im = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(im)
    for i in range(n):
        for j in range(n):
            if rng.random() < 0.18:
                draw.rectangle([j * cell, i * cell, (j + 1) * cell, (i + 1) * cell], fill="black")
    for k in range(n + 1):
        draw.line([(0, k * cell), (side, k * cell)], fill="black")
        draw.line([(k * cell, 0), (k * cell, side)], fill="black")
    return im


def honeycomb() -> Image.Image:
    """Yellow hexagonal cells with brown walls: ImageNet class 'honeycomb'."""
    im = Image.new("RGB", (224, 224), (240, 180, 40))
    draw = ImageDraw.Draw(im)
    r = 14
    for row in range(12):
        for col in range(10):
            cx, cy = col * r * 1.732 + (row % 2) * r * 0.866, row * r * 1.5
            pts = [(cx + r * np.cos(np.pi / 6 + k * np.pi / 3), cy + r * np.sin(np.pi / 6 + k * np.pi / 3))
                   for k in range(6)]
            draw.polygon(pts, outline=(120, 70, 0), fill=(250, 200, 60))
    return im


@pytest.fixture(scope="module")
def nets():
    m = module()
    return m.CnnFeatures(device="cpu"), m.CnnFeatures(device="cpu", pretrained=False)


@pytest.fixture(scope="module")
def images():
    m = module()
    return np.stack([m.render_image(im) for im in (crossword(0), crossword(1), honeycomb())])


def test_the_network_recognises_imagenet_classes_and_random_init_does_not(nets, images):
    pretrained, random_init = nets
    for net, expect in ((pretrained, True), (random_init, False)):
        logits = net.logits(images)
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        top = prob.argmax(1).tolist()
        assert (top == [CROSSWORD, CROSSWORD, HONEYCOMB]) is expect, top
    assert prob.max() < 0.05  # random init: no confident class at all


def test_features_separate_different_images_only_with_imagenet_weights(nets, images):
    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    pre, rnd = (net.of_arrays(images) for net in nets)
    assert pre.shape == (3, 1280) and pre.dtype == np.float32
    assert cos(pre[0], pre[1]) > 0.9  # two crosswords
    assert cos(pre[0], pre[2]) < 0.6  # crossword vs honeycomb
    assert cos(rnd[0], rnd[2]) > 0.8  # an untrained network hardly tells them apart


def test_weights_are_the_packaged_imagenet_file_loaded_safely(monkeypatch):
    m = module()
    path = m.weights_file()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name == f"efficientnet-lite0-{digest[:8]}.pth"  # torch hub convention: name carries the hash
    import torch

    real_load = torch.load
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    net = m.build_network()
    assert calls == [True]
    state = real_load(path, map_location="cpu", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    fresh = m.build_network(pretrained=False)
    assert not torch.equal(fresh.state_dict()["_fc.weight"], state["_fc.weight"])


def test_a_weights_file_with_other_keys_is_refused(monkeypatch):
    m = module()
    import torch

    real_load = torch.load

    def renamed(*args, **kwargs):
        state = real_load(*args, **kwargs)
        state["classifier.weight"] = state.pop("_fc.weight")
        return state

    monkeypatch.setattr(torch, "load", renamed)
    with pytest.raises(DataError, match=r"do not match efficientnet-lite0 \(missing \['_fc.weight'\], "
                                        r"unexpected \['classifier.weight'\]"):
        m.build_network()


def test_files_give_deterministic_rows_and_reasons_for_bad_files(nets, tmp_path):
    m = module()
    rgba = Image.new("RGBA", (60, 30), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (10, 5, 30, 25))
    rgba.save(tmp_path / "a.png")
    crossword(2).convert("P").save(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"\x89PNG not really")
    paths = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
    logs: list[str] = []
    feats, reasons = nets[0].of_files(paths, log=logs.append)
    assert feats.shape == (3, 1280) and reasons == ["", "", "unreadable (UnidentifiedImageError)"]
    assert np.abs(feats[:2]).sum(1).min() > 0 and not feats[2].any()
    again, _ = nets[0].of_files(paths, log=lambda s: None)
    np.testing.assert_array_equal(feats, again)
    one_by_one = m.CnnFeatures(device="cpu", batch_size=1, workers=1)
    np.testing.assert_allclose(one_by_one.of_files(paths, log=lambda s: None)[0], feats, atol=1e-4)
    assert logs[-1].startswith("  CNN features (cpu): 3/3 (100%)")


def test_rendering_composites_on_white_and_pads_to_a_square(tmp_path):
    m = module()
    white = m.normalise(np.ones((1, 1, 3), np.float32))[:, 0, 0]
    np.testing.assert_allclose(white, [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], rtol=1e-6)
    clear = m.render_image(Image.new("RGBA", (50, 20), (0, 0, 0, 0)))
    assert clear.shape == (3, 224, 224) and np.allclose(clear, white[:, None, None], atol=1e-5)
    black = m.render_image(Image.new("RGB", (100, 50), (0, 0, 0)))  # 224 x 112 in the middle
    assert np.allclose(black[:, :50, :], white[:, None, None], atol=1e-5)  # padding above is white
    assert np.allclose(black[:, 112, 112], m.normalise(np.zeros((1, 1, 3), np.float32))[:, 0, 0], atol=1e-5)
    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    assert m.render(tmp_path / "big.png", max_pixels=200 * 200) == (None, "oversized")


def test_without_the_packages_auto_falls_back_with_one_hint(monkeypatch):
    cls = get_dataset("openclipart")
    prep = sys.modules[cls.__module__].prep
    monkeypatch.setattr(prep.imfeat, "available", lambda: False)
    kind, note = prep.resolve_image_kind("auto")
    assert kind == "handcrafted" and "pip install bench[vision]" in note and "\n" not in note
    assert prep.resolve_image_kind("cnn") == ("cnn", "")
    with pytest.raises(DataError, match=r"pip install bench\[vision\]"):
        prep.imfeat.build_network()


def test_a_cuda_device_without_cuda_is_a_clear_error():
    m = module()
    import torch

    if torch.cuda.is_available():
        assert m.resolve_device("auto").type == "cuda"
    else:
        assert m.resolve_device("auto").type == "cpu"
        with pytest.raises(DataError, match="CUDA is not available"):
            m.resolve_device("cuda")
    with pytest.raises(DataError, match="not a torch device"):
        m.resolve_device("tpu9")
