"""DCCA: the correlation objective on hand-derived examples, the released architecture, and a
method that trains, selects on validation and puts a linear CCA of the outputs on top."""

from __future__ import annotations

import importlib
import math
import sys

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from torch import nn

from bench.method import FitContext
from bench.params import build
from bench.registry import get_dataset, get_method
from bench.splits import SplitSpec, compute_split

_dcca = sys.modules[get_method("dcca").cls.__module__]
dcca_correlation = importlib.import_module(_dcca.__package__ + ".common.cca_math").dcca_correlation
R = 1e-3


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_objective_of_one_dimensional_outputs_by_hand():
    # h1 = (-1, 0, 1), h2 = 2 h1: m - 1 = 2, var1 = 2/2 = 1, var2 = 8/2 = 4, cov12 = 4/2 = 2
    t = 2 / math.sqrt((1 + R) * (4 + R))
    expect = math.sqrt(t * t + R)
    got = dcca_correlation(_t([[-1], [0], [1]]), _t([[-2], [0], [2]]))
    assert float(got) == pytest.approx(expect, abs=1e-12)
    assert 0.99 < expect < 1.0  # sanity of the hand value: nearly perfectly correlated


def test_objective_of_diagonal_two_dimensional_outputs_by_hand():
    # H1 rows (+-1, +-1): centred, S11 = (4/3) I. H2 = H1 diag(2, -1): S22 = diag(16/3, 4/3),
    # S12 = diag(8/3, -4/3); T is diagonal with entries (8/3)/sqrt((4/3+r)(16/3+r)), (-4/3)/(4/3+r).
    h1 = _t([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    h2 = h1 * _t([2, -1])
    t1 = (8 / 3) / math.sqrt((4 / 3 + R) * (16 / 3 + R))
    t2 = (4 / 3) / (4 / 3 + R)
    both = math.sqrt(t1**2 + R) + math.sqrt(t2**2 + R)
    assert float(dcca_correlation(h1, h2)) == pytest.approx(both, abs=1e-12)
    assert float(dcca_correlation(h1, h2, top=1)) == pytest.approx(math.sqrt(max(t1, t2) ** 2 + R), abs=1e-12)


def test_objective_drops_null_directions_of_a_view():
    # the second column of h1 is constant: with r = 0 its variance is 0 and must be dropped
    # (eigenvalue <= 1e-9), leaving the 1-d problem of the first test: T = 2 / sqrt(1 * 4) = 1
    h1 = _t([[-1, 5], [0, 5], [1, 5]])
    h2 = _t([[-2], [0], [2]])
    got = dcca_correlation(h1, h2, r1=0.0, r2=0.0)
    assert float(got) == pytest.approx(1.0, abs=1e-9)


def test_objective_equals_the_top_singular_values_of_a_naive_whitened_cross_covariance():
    rng = np.random.default_rng(0)
    h1, h2 = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    h2[:, 0] += 2 * h1[:, 1]
    c1, c2 = h1 - h1.mean(0), h2 - h2.mean(0)
    s11 = c1.T @ c1 / 49 + R * np.eye(4)
    s22 = c2.T @ c2 / 49 + R * np.eye(4)
    t = np.linalg.inv(sqrtm(s11)) @ (c1.T @ c2 / 49) @ np.linalg.inv(sqrtm(s22))
    sv = np.linalg.svd(t, compute_uv=False)
    for top in (4, 2):
        expect = np.sqrt(sv[:top] ** 2 + R).sum()
        assert float(dcca_correlation(_t(h1), _t(h2), top=top)) == pytest.approx(expect, abs=1e-9)


def test_view_network_is_the_released_architecture():
    net = _dcca.mlp(7, [16, 16, 16], 10)
    kinds = [type(layer) for layer in net]
    assert kinds == [nn.Linear, nn.Sigmoid, nn.BatchNorm1d] * 3 + [nn.BatchNorm1d, nn.Linear]
    assert all(not layer.affine for layer in net if isinstance(layer, nn.BatchNorm1d))
    assert net[-1].in_features == 16 and net[-1].out_features == 10 and net[0].in_features == 7


@pytest.fixture(scope="module")
def synthetic_split():
    cls = get_dataset("synthetic")
    data = cls(build(cls.Params, {"n": 400}, "synthetic")).load()
    split = compute_split(data, SplitSpec(seed=0))
    return data.subset(split.train), data.subset(split.val)


def _dcca_method(**params):
    cls = get_method("dcca").cls
    base = {"hidden": [32, 32], "out_dim": 4, "batch": 64, "epochs": 3}
    return cls(build(cls.Params, {**base, **params}, "dcca"))


def test_dcca_trains_and_encodes_both_modalities(synthetic_split):
    train, val = synthetic_split
    m = _dcca_method()
    ctx = FitContext()
    m.fit(train, val, ctx)
    img, txt = m.encode(image=val.image, text=val.text)
    assert img.shape == (val.n, 4) and txt.shape == (val.n, 4) and img.dtype == np.float32
    assert np.isfinite(img).all() and np.isfinite(txt).all()
    assert [row["step"] for row in ctx.history] == [1, 2, 3]
    assert all({"loss", "val_corr", "val_map"} <= set(row) for row in ctx.history)
    assert next(m.net.parameters()).dtype == torch.float64  # the release trains in float64
    assert m.encode(image=val.image[:3])[1] is None


def test_training_raises_the_correlation_of_the_outputs(synthetic_split):
    train, val = synthetic_split
    ctx = FitContext()
    _dcca_method(epochs=6).fit(train, val, ctx)
    losses = [row["loss"] for row in ctx.history]
    assert losses[-1] < losses[0] - 0.1, losses


def test_linear_cca_on_top_whitens_the_selected_networks_training_outputs(synthetic_split, monkeypatch):
    """Fitted on the outputs of the network that encodes: cov (1/(m-1)) + 1e-4 A'A = I. Validation
    is rigged so that epoch 1 of 3 is selected (the release fits on the last epoch's outputs)."""
    train, val = synthetic_split
    scores = iter([0.9, 0.5, 0.1])
    monkeypatch.setattr(_dcca, "validation_map", lambda *args, **kwargs: next(scores))
    m = _dcca_method(epochs=3)
    ctx = FitContext()
    m.fit(train, val, ctx)
    assert ctx.best_epoch == 1 and len(ctx.history) == 3
    img, txt = m.encode(image=train.image, text=train.text)
    a, b = m.cca.a.numpy(), m.cca.b.numpy()
    np.testing.assert_allclose(np.cov(img.astype(np.float64), rowvar=False) + 1e-4 * a.T @ a, np.eye(4), atol=1e-4)
    np.testing.assert_allclose(np.cov(txt.astype(np.float64), rowvar=False) + 1e-4 * b.T @ b, np.eye(4), atol=1e-4)
    s = m.cca.correlations.numpy()
    assert np.all(np.diff(s) <= 1e-12) and 0 <= s.min() and s.max() <= 1
