"""Every registered name of the GNN family trains on tiny synthetic data, complete and incomplete."""

from __future__ import annotations

import numpy as np
import pytest

from bench.method import FitContext, validation_map
from bench.params import build
from bench.registry import get_dataset, method_entries
from bench.splits import MissingSpec, SplitSpec, compute_split, missing_mask

FAMILIES = ("pgnn_con", "ignn_con", "dagnn")
NAMES = [name for name, e in method_entries().items() if e.family in FAMILIES]
TINY = {"D": 16, "layers": 2, "k": 3, "epochs": 2, "batch": 50, "lr": 1e-3, "stage2_epochs": 1, "lr2": 1e-3}


def test_the_family_registers_full_models_ablations_and_dagnn():
    ablations = {"no_gan", "no_gnn", "binary_con", "no_con", "no_layer_agg", "no_recon"}
    for family in ("pgnn_con", "ignn_con"):
        assert {f"{family}/{a}" for a in ablations} | {family} <= set(NAMES)
    assert "dagnn" in NAMES


def _data(n, **kw):
    cls = get_dataset("synthetic")
    data = cls(build(cls.Params, {"n": n, "image_dim": 48, "text_dim": 32, **kw}, "ds")).load()
    split = compute_split(data, SplitSpec())
    train, val, test = data.subset(split.train), data.subset(split.val), data.subset(split.test)
    ip, tp = missing_mask(train.n, MissingSpec(0.2, 0.4, 0.4))
    return train, train.with_missing(ip, tp), val, test


@pytest.fixture(scope="module")
def tiny():
    return _data(200)


def _make(name, **params):
    e = method_entries()[name]
    return e.cls(build(e.cls.Params, {**TINY, **params, **e.fixed}, name))


@pytest.mark.parametrize("incomplete", [False, True], ids=["complete", "incomplete"])
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_trains_and_encodes(name, incomplete, tiny):
    train, inc, val, test = tiny
    method = _make(name)
    ctx = FitContext(seed=0)
    method.fit(inc if incomplete else train, val, ctx)
    img, txt = method.encode(image=test.image, text=test.text)
    assert img.shape == (test.n, 16) and txt.shape == (test.n, 16)
    assert img.dtype == np.float32 and np.isfinite(img).all() and np.isfinite(txt).all()
    assert ctx.best_epoch is not None and np.isfinite(ctx.best_val_map)
    assert len(ctx.history) == (3 if incomplete else 2)
    only_img, none_txt = method.encode(image=test.image[:3])
    assert only_img.shape == (3, 16) and none_txt is None


@pytest.mark.parametrize("name", FAMILIES)
def test_training_beats_the_untrained_model_on_validation(name):
    train, _, val, _ = _data(400, seed=1)
    params = {"D": 64, "layers": 2, "batch": 50, "lr": 1e-3}
    untrained = _make(name, epochs=0, **params)
    untrained.fit(train, val, FitContext(seed=0))
    before = validation_map(untrained, val)
    trained = _make(name, epochs=8, **params)
    trained.fit(train, val, FitContext(seed=0))
    after = validation_map(trained, val)
    assert after > before + 0.05, (before, after)
