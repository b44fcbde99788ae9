"""The CCA family (cca, kcca, mlcca) and its shared maths: checked against cca-zoo / scikit-learn
and naive references, and for the defining properties of canonical projections."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
from cca_zoo.linear import CCA as ZooCCA
from cca_zoo.linear import RidgeCCA as ZooRidgeCCA
from cca_zoo.nonparametric import KCCA as ZooKCCA
from scipy.linalg import sqrtm
from scipy.spatial.distance import pdist
from sklearn.cross_decomposition import CCA as SklearnCCA

from bench.data import make_data
from bench.method import FitContext
from bench.metrics import mean_average_precision
from bench.params import build
from bench.registry import get_dataset, get_method
from bench.splits import SplitSpec, compute_split

# the plugin modules, wherever the registry loaded them from (the package name is private)
_kcca = sys.modules[get_method("kcca").cls.__module__]
_mlcca = sys.modules[get_method("mlcca").cls.__module__]
_math = importlib.import_module(_kcca.__package__ + ".common.cca_math")
inv_sqrt = _math.inv_sqrt
median_distance, nystrom_basis, rbf = _kcca.median_distance, _kcca.nystrom_basis, _kcca.rbf
label_weighted_moments, normalised_labels = _mlcca.label_weighted_moments, _mlcca.normalised_labels


def _method(name, **params):
    cls = get_method(name).cls
    return cls(build(cls.Params, params, name))


def _fit(name, data, **params):
    m = _method(name, **params)
    m.fit(data, data, FitContext())
    return m


def _pair_correlations(a, b):
    return np.array([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(a.shape[1])])


@pytest.fixture(scope="module")
def views():
    """Two views sharing a 3-d latent, with multi-hot labels that depend on it."""
    rng = np.random.default_rng(0)
    n = 300
    z = rng.normal(size=(n, 3))
    x = z @ rng.normal(size=(3, 6)) + rng.normal(size=(n, 6))
    y = z @ rng.normal(size=(3, 5)) + rng.normal(size=(n, 5))
    labels = np.column_stack([z > 0, z < -1]).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    return make_data("toy", x, y, labels)


# --- cca against established implementations --------------------------------------------------------

def test_cca_canonical_correlations_equal_cca_zoo_and_scikit_learn(views):
    x, y = views.image.astype(np.float64), views.text.astype(np.float64)
    ours = _fit("cca", views, dim=4, reg=0.0, power=0.0).correlations
    zoo = _pair_correlations(*ZooCCA(n_components=4).fit([x, y]).transform([x, y]))
    sk = _pair_correlations(*SklearnCCA(n_components=4, max_iter=5000, tol=1e-12).fit(x, y).transform(x, y))
    np.testing.assert_allclose(ours, zoo, atol=1e-4)
    np.testing.assert_allclose(ours, sk, atol=1e-4)


def test_cca_ridge_is_cca_zoo_shrinkage_rescaled(views):
    """Our C = S_n + reg tr(S_n)/d I; cca-zoo's (1 - c) S_{n-1} + c I. Same directions when
    c/(1 - c) = reg tr(S_n)/d * n/(n - 1) per view, so the projections correlate identically."""
    x, y = views.image.astype(np.float64), views.text.astype(np.float64)
    n, reg = len(x), 0.3
    shrink = []
    for v in (x, y):
        s_n = np.cov(v, rowvar=False, bias=True)
        q = reg * np.trace(s_n) / v.shape[1] * n / (n - 1)
        shrink.append(q / (1 + q))
    ours = _fit("cca", views, dim=4, reg=reg, power=0.0)
    zoo = ZooRidgeCCA(n_components=4, shrinkage=shrink).fit([x, y])
    np.testing.assert_allclose(_pair_correlations(*ours.encode(views.image, views.text)),
                               _pair_correlations(*zoo.transform([x, y])), atol=1e-4)
    # and a regularised solution differs from the unregularised one (the ridge is applied at all)
    plain = _fit("cca", views, dim=4, reg=0.0, power=0.0)
    assert np.abs(ours.correlations - plain.correlations).max() > 1e-3


# --- defining properties of the family -----------------------------------------------------------

FAMILY = [("cca", {"reg": 0.0}), ("kcca", {"reg": 1e-3, "rank": 100}), ("mlcca", {"reg": 0.0})]


@pytest.mark.parametrize(("name", "params"), FAMILY)
def test_canonical_correlations_are_sorted_and_in_unit_interval(views, name, params):
    s = _fit(name, views, dim=5, power=0.0, **params).correlations
    assert np.all(np.diff(s) <= 1e-12) and s.min() >= 0 and s.max() <= 1 + 1e-9, s


@pytest.mark.parametrize(("name", "params"), FAMILY)
def test_projections_are_uncorrelated_with_unit_variance_within_each_view(views, name, params):
    m = _fit(name, views, dim=4, power=0.0, **params)
    img, txt = m.encode(image=views.image, text=views.text)
    cov_img, cov_txt = np.cov(img, rowvar=False, bias=True), np.cov(txt, rowvar=False, bias=True)
    if name == "kcca":  # A'(C_xx + r I)A = I: the ridge's share r A'A is all that is missing
        a, b = m.a.numpy(), m.b.numpy()
        np.testing.assert_allclose(cov_img + m.ridge[0] * a.T @ a, np.eye(4), atol=1e-5)
        np.testing.assert_allclose(cov_txt + m.ridge[1] * b.T @ b, np.eye(4), atol=1e-5)
    else:
        np.testing.assert_allclose(cov_img, np.eye(4), atol=1e-4)
        np.testing.assert_allclose(cov_txt, np.eye(4), atol=1e-4)


def test_cca_projected_pairs_correlate_by_the_canonical_correlations(views):
    m = _fit("cca", views, dim=4, reg=0.0, power=0.0)
    img, txt = m.encode(image=views.image, text=views.text)
    np.testing.assert_allclose(_pair_correlations(img, txt), m.correlations, atol=1e-4)


def test_power_scales_each_direction_by_its_correlation(views):
    plain = _fit("mlcca", views, dim=3, reg=0.1, power=0.0)
    scaled = _fit("mlcca", views, dim=3, reg=0.1, power=2.0)
    np.testing.assert_allclose(scaled.encode(image=views.image)[0],
                               plain.encode(image=views.image)[0] * plain.correlations**2, rtol=1e-4, atol=1e-5)


# --- kcca ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nonlinear():
    rng = np.random.default_rng(1)
    n = 80
    z = rng.normal(size=(n, 2))
    x = np.tanh(z @ rng.normal(size=(2, 4))) + 0.3 * rng.normal(size=(n, 4))
    y = (z @ rng.normal(size=(2, 3))) ** 2 + 0.3 * rng.normal(size=(n, 3))
    return make_data("toy", x, y, np.ones((n, 1), np.uint8))


def test_kcca_at_full_rank_equals_exact_kernel_cca_of_cca_zoo(nonlinear):
    """rank = n: the Nystrom features reproduce the kernel, so our ridge CCA on them is exact
    regularised KCCA. cca-zoo's within-view form (1 - c) K^2/(n-1) + c K matches our
    K^2/n + r K when c/(1 - c) = r n/(n - 1); its kernel exp(-gamma d^2) has gamma = 1/(2 sigma^2)."""
    d = nonlinear
    ours = _fit("kcca", d, dim=3, reg=0.1, power=0.0, rank=d.n)
    q = [r * d.n / (d.n - 1) for r in ours.ridge]
    zoo = ZooKCCA(n_components=3, kernel="rbf", gamma=[1 / (2 * s * s) for s in ours.sigma],
                  shrinkage=[v / (1 + v) for v in q])
    x, y = d.image.astype(np.float64), d.text.astype(np.float64)
    expect = _pair_correlations(*zoo.fit([x, y]).transform([x, y]))
    got = _pair_correlations(*ours.encode(d.image, d.text))
    np.testing.assert_allclose(got, expect, atol=1e-4)
    # a quarter of the rank is an approximation: measurably different
    low = _fit("kcca", d, dim=3, reg=0.1, power=0.0, rank=d.n // 4)
    assert np.abs(_pair_correlations(*low.encode(d.image, d.text)) - expect).max() > 1e-3


def test_nystrom_features_reproduce_the_kernel_at_full_rank_and_approximate_it_below():
    rng = np.random.default_rng(2)
    x = torch.as_tensor(rng.normal(size=(60, 3)), dtype=torch.float64)
    k = rbf(x, x, 1.5)
    err = []
    for m in (60, 30, 10):
        land = x[:m]
        phi = rbf(x, land, 1.5) @ nystrom_basis(rbf(land, land, 1.5))
        err.append(float((phi @ phi.T - k).abs().max()))
    assert err[0] < 1e-6 and err[0] < err[1] < err[2], err


def test_rbf_and_median_heuristic_equal_naive_formulas():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(7, 4)), rng.normal(size=(5, 4))
    naive = np.exp(-((a[:, None, :] - b[None]) ** 2).sum(-1) / (2 * 0.8**2))
    np.testing.assert_allclose(rbf(torch.as_tensor(a), torch.as_tensor(b), 0.8).numpy(), naive, atol=1e-12)
    assert median_distance(torch.as_tensor(a)) == pytest.approx(np.median(pdist(a)), rel=1e-9)


# --- mlcca ---------------------------------------------------------------------------------------

def test_mlcca_with_identity_correspondences_is_cca(views):
    """Each item its own label (s = I): the weighted cross-covariance is the paired one."""
    own = make_data("own", views.image, views.text, np.eye(views.n, dtype=np.uint8))
    cca = _fit("cca", own, dim=4, reg=0.05, power=1.0)
    for weighted in (False, True):
        ml = _fit("mlcca", own, dim=4, reg=0.05, power=1.0, weighted_cov=weighted)
        np.testing.assert_allclose(ml.correlations, cca.correlations, atol=1e-6)
        for a, b in zip(ml.encode(views.image, views.text), cca.encode(views.image, views.text)):
            signs = np.sign((a * b).sum(0))  # a direction is defined up to its sign
            np.testing.assert_allclose(a * signs, b, atol=1e-4)


def test_mlcca_differs_from_cca_when_labels_are_shared(views):
    cca = _fit("cca", views, dim=4, reg=0.05, power=0.0)
    ml = _fit("mlcca", views, dim=4, reg=0.05, power=0.0)
    assert np.abs(ml.correlations - cca.correlations).max() > 0.05


def _naive_moments(x, y, zx, zy, weighted):
    """The double sum over all (image i, text j) pairs with s_ij = cos(z_i, z_j)."""
    s = np.array([[a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for b in zy] for a in zx])
    total = s.sum()
    wx, wy = s.sum(1), s.sum(0)
    if weighted:
        mx, my = wx @ x / total, wy @ y / total
        cxx = sum(w * np.outer(v - mx, v - mx) for w, v in zip(wx, x)) / total
        cyy = sum(w * np.outer(v - my, v - my) for w, v in zip(wy, y)) / total
    else:
        mx, my = x.mean(0), y.mean(0)
        cxx, cyy = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
    cxy = sum(s[i, j] * np.outer(x[i] - mx, y[j] - my) for i in range(len(x)) for j in range(len(y))) / total
    return mx, my, cxx, cyy, cxy


@pytest.mark.parametrize("weighted", [False, True])
def test_mlcca_fast_form_equals_the_double_sum_over_pairs(weighted):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(9, 3)), rng.normal(size=(7, 2))  # unpaired: different items
    zx = (rng.random((9, 4)) < 0.5).astype(float)
    zy = (rng.random((7, 4)) < 0.5).astype(float)
    zx[:, 0] = zy[:, 0] = 1
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    fast = label_weighted_moments(t(x), t(y), normalised_labels(t(zx)), normalised_labels(t(zy)), weighted)
    for got, expect in zip(fast, _naive_moments(x, y, zx, zy, weighted)):
        np.testing.assert_allclose(got.numpy(), expect, atol=1e-12)


def test_mlcca_learns_from_unpaired_rows(views):
    """With masks, images of image-present rows pair with texts of text-present rows."""
    im = np.arange(views.n) % 3 != 0
    tm = np.arange(views.n) % 3 != 1
    ml = _method("mlcca", dim=3, reg=0.1, power=0.0)
    ml.fit(views.with_missing(im, tm), views, FitContext())
    x, y = views.image[im].astype(np.float64), views.text[tm].astype(np.float64)
    z = views.labels.astype(float)
    mx, my, cxx, cyy, cxy = _naive_moments(x, y, z[im], z[tm], False)
    cxx += 0.1 * np.trace(cxx) / 6 * np.eye(6)
    cyy += 0.1 * np.trace(cyy) / 5 * np.eye(5)
    wx, wy = np.linalg.inv(sqrtm(cxx)), np.linalg.inv(sqrtm(cyy))
    expect = np.linalg.svd(wx @ cxy @ wy, compute_uv=False)[:3]
    np.testing.assert_allclose(ml.correlations, expect, atol=1e-8)
    # the zero-filled rows would have pulled the statistics: dropping them changes the result
    paired = _fit("mlcca", views.subset(np.flatnonzero(im & tm)), dim=3, reg=0.1, power=0.0)
    assert np.abs(paired.correlations - ml.correlations).max() > 1e-3


def test_inv_sqrt_equals_scipy_and_drops_small_eigenvalues():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(5, 5))
    c = a @ a.T + 0.1 * np.eye(5)
    np.testing.assert_allclose(inv_sqrt(torch.as_tensor(c)).numpy(), np.linalg.inv(sqrtm(c)), atol=1e-9)
    v = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    singular = v @ np.diag([4.0, 1.0, 1e-12]) @ v.T
    pinv = v[:, :2] @ np.diag([0.5, 1.0]) @ v[:, :2].T
    np.testing.assert_allclose(inv_sqrt(torch.as_tensor(singular), floor=0.0, drop=1e-9).numpy(), pinv, atol=1e-9)


# --- end to end on synthetic data ---------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_split():
    cls = get_dataset("synthetic")
    data = cls(build(cls.Params, {"n": 400}, "synthetic")).load()
    split = compute_split(data, SplitSpec(seed=0))
    return data.subset(split.train), data.subset(split.val), data.subset(split.test)


@pytest.mark.parametrize(("name", "params"), [("kcca", {"dim": 16, "rank": 128}), ("mlcca", {"dim": 16}),
                                              ("mlcca", {"dim": 16, "weighted_cov": True})])
def test_shallow_baselines_beat_random_embeddings_on_synthetic_data(synthetic_split, name, params):
    train, val, test = synthetic_split
    rng = np.random.default_rng(0)
    img_r, txt_r = rng.normal(size=(test.n, 16)), rng.normal(size=(test.n, 16))
    chance = mean_average_precision(img_r, txt_r, test.labels, test.labels)
    method = _method(name, **params)
    method.fit(train, val, FitContext())
    img, txt = method.encode(image=test.image, text=test.text)
    assert img.shape == (test.n, 16) and txt.shape == (test.n, 16) and img.dtype == np.float32
    for score in (mean_average_precision(img, txt, test.labels, test.labels),
                  mean_average_precision(txt, img, test.labels, test.labels)):
        assert score > chance + 0.1, (score, chance)


def test_only_mlcca_declares_unpaired_learning():
    assert get_method("mlcca").cls.supports_missing
    assert not any(get_method(n).cls.supports_missing for n in ("cca", "kcca", "dcca"))
