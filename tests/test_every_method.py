"""Every registered built-in method and variant, found in the registry (no list to keep up to
date): trained with its `test_params` on small synthetic data on the CPU, it encodes both
modalities into one finite float32 space, logs finite values, beats random projections on
complete data, and, when it learns from unpaired rows, ignores what absent rows hold."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.method import FitContext
from bench.metrics import mean_average_precision
from bench.params import build
from bench.registry import get_dataset, load_plugins, method_entries, origin_of
from bench.splits import MissingSpec, SplitSpec, compute_split, missing_mask


def _builtin_entries():
    load_plugins()
    return {name: e for name, e in method_entries().items() if origin_of("method", e.family).kind == "built-in"}


ENTRIES = _builtin_entries()
NAMES = sorted(ENTRIES)
UNPAIRED = sorted(name for name, e in ENTRIES.items() if e.cls.supports_missing)
FAMILIES = sorted({e.family for e in ENTRIES.values()})
UNPAIRED_FAMILIES = sorted(name for name in UNPAIRED if name in FAMILIES)  # variants share the family's fit
MISSING = MissingSpec(0.2, 0.4, 0.4)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and spinning threads stall on a machine shared with other work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def splits():
    """Synthetic data (432 train / 48 val / 120 test rows) and the training part with 80% of rows unpaired."""
    cls = get_dataset("synthetic")
    data = cls(build(cls.Params, {"n": 600, "image_dim": 48, "text_dim": 32}, "ds")).load()
    split = compute_split(data, SplitSpec())
    train, val, test = data.subset(split.train), data.subset(split.val), data.subset(split.test)
    image_present, text_present = missing_mask(train.n, MISSING)
    return train, train.with_missing(image_present, text_present), val, test


def _make(name):
    e = ENTRIES[name]
    return e.cls(build(e.cls.Params, {**e.cls.test_params, **e.fixed}, name))


def _fit(name, train, val):
    method, ctx = _make(name), FitContext(seed=0)
    method.fit(train, val, ctx)
    return method, ctx


def _retrieval_map(img, txt, labels):
    return 0.5 * (mean_average_precision(img, txt, labels, labels) + mean_average_precision(txt, img, labels, labels))


def _check_outputs(method, ctx, test):
    img, txt = method.encode(image=test.image, text=test.text)
    assert img.ndim == 2 and img.shape[0] == test.n and txt.shape == img.shape
    assert img.dtype == np.float32 and txt.dtype == np.float32
    assert np.isfinite(img).all() and np.isfinite(txt).all()
    only_image, no_text = method.encode(image=test.image[:3])
    no_image, only_text = method.encode(text=test.text[:3])
    assert no_text is None and no_image is None
    np.testing.assert_allclose(only_image, img[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(only_text, txt[:3], rtol=1e-5, atol=1e-6)
    for row in ctx.history:  # what the record and MLflow receive
        assert all(math.isfinite(v) for v in row.values()), row
    if ctx.best_epoch is not None:  # trained over epochs: one validation score per epoch, numbered 1..n
        steps = [row["step"] for row in ctx.history]
        assert steps == list(range(1, len(steps) + 1)) and all("val_map" in row for row in ctx.history)
        assert ctx.best_val_map == max(row["val_map"] for row in ctx.history)
    return img, txt


def test_the_registry_holds_every_family_and_the_ablations():
    assert {"cca", "kcca", "mlcca", "label_regression", "dcca", "dscmr", "acmr", "algcn", "dagnn"} <= set(NAMES)
    ablations = {"no_gan", "no_gnn", "binary_con", "no_con", "no_layer_agg", "no_recon"}
    for family in ("pgnn_con", "ignn_con"):
        assert {f"{family}/{a}" for a in ablations} | {family} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_method_trained_on_complete_data_beats_random_projections(name, splits):
    train, _, val, test = splits
    method, ctx = _fit(name, train, val)
    img, txt = _check_outputs(method, ctx, test)
    rng = np.random.default_rng(0)
    chance = np.mean([_retrieval_map(test.image @ rng.normal(size=(test.image.shape[1], 16)),
                                     test.text @ rng.normal(size=(test.text.shape[1], 16)), test.labels)
                      for _ in range(5)])
    learned = _retrieval_map(img, txt, test.labels)
    assert learned > chance + 0.03, (learned, chance)


@pytest.mark.parametrize("name", UNPAIRED)
def test_every_method_that_learns_from_unpaired_rows_trains_on_incomplete_data(name, splits):
    _, incomplete, val, test = splits
    method, ctx = _fit(name, incomplete, val)
    _check_outputs(method, ctx, test)


@pytest.mark.parametrize("name", UNPAIRED_FAMILIES)
def test_what_absent_rows_hold_does_not_change_what_is_learned(name, splits):
    """Absent features arrive zero-filled and flagged; junk in their place must change nothing."""
    _, incomplete, val, test = splits
    rng = np.random.default_rng(0)
    junk_img, junk_txt = incomplete.image.copy(), incomplete.text.copy()
    junk_img[~incomplete.image_present] = rng.normal(size=junk_img[~incomplete.image_present].shape)
    junk_txt[~incomplete.text_present] = rng.normal(size=junk_txt[~incomplete.text_present].shape)
    clean = _fit(name, incomplete, val)[0].encode(image=test.image, text=test.text)
    junk = _fit(name, replace(incomplete, image=junk_img, text=junk_txt), val)[0].encode(image=test.image,
                                                                                         text=test.text)
    np.testing.assert_allclose(junk[0], clean[0], atol=1e-5)
    np.testing.assert_allclose(junk[1], clean[1], atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_encode_before_fit_is_refused_naming_the_method(name, splits):
    with pytest.raises(RuntimeError, match=f"{ENTRIES[name].family}: call fit"):
        _make(name).encode(image=splits[3].image)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_search_space_suggests_valid_values_of_known_parameters(family):
    import optuna

    cls = ENTRIES[family].cls
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        suggested = cls.search_space(study.ask())
        assert suggested and set(suggested) <= set(cls.Params.__dataclass_fields__)  # every built-in is tunable
        build(cls.Params, suggested, family)  # names, types and bounds accepted
