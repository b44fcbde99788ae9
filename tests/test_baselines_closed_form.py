"""The closed-form baselines: CCA finds a planted shared direction; label regression is plain ridge."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from bench.data import make_data
from bench.method import FitContext
from bench.metrics import mean_average_precision
from bench.params import build
from bench.registry import get_dataset, get_method
from bench.splits import SplitSpec, compute_split


def _method(name, **params):
    cls = get_method(name).cls
    return cls(build(cls.Params, params, name))


def _paired(image, text, labels=None):
    n = len(image)
    labels = np.ones((n, 1), dtype=np.uint8) if labels is None else labels
    return make_data("toy", image, text, labels)


# One latent z shared by both views: image coordinate 1 = z + 0.5 e, text coordinate 1 = z + 1.0 e',
# every other coordinate independent noise; then each view is rotated so that no axis is special.
S_IMG, S_TXT = 0.5, 1.0
TRUE_CORRELATION = 1 / np.sqrt((1 + S_IMG**2) * (1 + S_TXT**2))  # 0.632


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    n = 6000
    z = rng.normal(size=n)
    img = np.column_stack([z + S_IMG * rng.normal(size=n), rng.normal(size=(n, 4))])
    txt = np.column_stack([z + S_TXT * rng.normal(size=n), rng.normal(size=(n, 3))])
    img = img @ ortho_group.rvs(5, random_state=1)
    txt = txt @ ortho_group.rvs(4, random_state=2)
    return z, _paired(img, txt)


def test_cca_recovers_the_planted_canonical_correlation(planted):
    _, data = planted
    cca = _method("cca", dim=4, reg=0.0, power=0.0)
    cca.fit(data, data, FitContext())
    assert cca.correlations[0] == pytest.approx(TRUE_CORRELATION, abs=0.02)
    assert cca.correlations[1] < 0.06  # nothing else is shared


def test_cca_top_image_direction_is_the_planted_latent(planted):
    z, data = planted
    cca = _method("cca", dim=4, reg=0.0, power=0.0)
    ctx = FitContext()
    cca.fit(data, data, ctx)
    img, txt = cca.encode(image=data.image, text=data.text)
    # the best linear predictor of z from the image view is its first (unrotated) coordinate
    assert abs(np.corrcoef(img[:, 0], z)[0, 1]) == pytest.approx(1 / np.sqrt(1 + S_IMG**2), abs=0.02)
    assert abs(np.corrcoef(txt[:, 0], z)[0, 1]) == pytest.approx(1 / np.sqrt(1 + S_TXT**2), abs=0.02)
    assert ctx.history[0]["top_correlation"] == pytest.approx(cca.correlations[0])


def test_cca_canonical_variates_are_uncorrelated_with_unit_variance_at_power_zero(planted):
    _, data = planted
    cca = _method("cca", dim=3, reg=0.0, power=0.0)
    cca.fit(data, data, FitContext())
    img, _ = cca.encode(image=data.image)
    np.testing.assert_allclose(np.cov(img, rowvar=False, bias=True), np.eye(3), atol=1e-3)


def test_cca_keeps_at_most_the_requested_number_of_directions(planted):
    _, data = planted
    cca = _method("cca", dim=2)
    cca.fit(data, data, FitContext())
    img, txt = cca.encode(image=data.image[:5], text=data.text[:5])
    assert img.shape == (5, 2) and txt.shape == (5, 2) and img.dtype == np.float32
    assert cca.encode(image=data.image[:5])[1] is None


def _naive_ridge(x, y, lam):
    """Ridge by least squares on the augmented system [Xc; sqrt(l) I] W = [Yc; 0], l = lam * tr(Xc'Xc) / d."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    d = x.shape[1]
    strength = lam * np.trace(xc.T @ xc) / d
    a = np.vstack([xc, np.sqrt(strength) * np.eye(d)])
    b = np.vstack([yc, np.zeros((d, y.shape[1]))])
    w = np.linalg.lstsq(a, b, rcond=None)[0]
    return lambda new: (new - mx) @ w + my


@pytest.fixture(scope="module")
def labelled():
    rng = np.random.default_rng(3)
    n, c = 150, 5
    labels = (rng.random((n, c)) < 0.3).astype(np.uint8)
    labels[np.arange(n), rng.integers(0, c, n)] = 1
    img = labels @ rng.normal(size=(c, 7)) + rng.normal(size=(n, 7))
    txt = labels @ rng.normal(size=(c, 4)) + rng.normal(size=(n, 4))
    return make_data("toy", img, txt, labels), rng.normal(size=(20, 7)), rng.normal(size=(20, 4))


@pytest.mark.parametrize("lam", [0.0, 0.3, 5.0])
def test_label_regression_equals_a_naive_ridge_solution(labelled, lam):
    data, new_img, new_txt = labelled
    lr = _method("label_regression", lam=lam)
    lr.fit(data, data, FitContext())
    img, txt = lr.encode(image=new_img, text=new_txt)
    y = data.labels.astype(np.float64)
    np.testing.assert_allclose(img, _naive_ridge(data.image.astype(np.float64), y, lam)(new_img), atol=1e-4)
    np.testing.assert_allclose(txt, _naive_ridge(data.text.astype(np.float64), y, lam)(new_txt), atol=1e-4)


def test_label_regression_fits_each_modality_on_the_rows_where_it_is_present(labelled):
    data, new_img, new_txt = labelled
    img_present = np.arange(data.n) % 3 != 0
    txt_present = np.arange(data.n) % 3 != 1
    lr = _method("label_regression", lam=0.3)
    lr.fit(data.with_missing(img_present, txt_present), data, FitContext())
    img, txt = lr.encode(image=new_img, text=new_txt)
    y = data.labels.astype(np.float64)
    expect_img = _naive_ridge(data.image[img_present].astype(np.float64), y[img_present], 0.3)(new_img)
    expect_txt = _naive_ridge(data.text[txt_present].astype(np.float64), y[txt_present], 0.3)(new_txt)
    np.testing.assert_allclose(img, expect_img, atol=1e-4)
    np.testing.assert_allclose(txt, expect_txt, atol=1e-4)


@pytest.fixture(scope="module")
def synthetic_split():
    cls = get_dataset("synthetic")
    data = cls(build(cls.Params, {"n": 400}, "synthetic")).load()
    split = compute_split(data, SplitSpec(seed=0))
    return data.subset(split.train), data.subset(split.val), data.subset(split.test)


def _maps(img, txt, labels):
    return (mean_average_precision(img, txt, labels, labels), mean_average_precision(txt, img, labels, labels))


@pytest.mark.parametrize(("name", "params"), [("cca", {"dim": 16}), ("label_regression", {})])
def test_the_baselines_beat_random_embeddings_on_synthetic_data(synthetic_split, name, params):
    train, val, test = synthetic_split
    rng = np.random.default_rng(0)
    chance = _maps(rng.normal(size=(test.n, 16)), rng.normal(size=(test.n, 16)), test.labels)
    method = _method(name, **params)
    method.fit(train, val, FitContext())
    learned = _maps(*method.encode(image=test.image, text=test.text), test.labels)
    assert learned[0] > chance[0] + 0.1 and learned[1] > chance[1] + 0.1, (learned, chance)
