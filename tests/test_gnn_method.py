"""The GNN family's training behaviours: variants take effect, incomplete data, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import builtin_plugin

from bench.errors import ConfigError
from bench.method import FitContext, validation_map
from bench.params import build
from bench.registry import get_dataset, get_method
from bench.splits import MissingSpec, SplitSpec, compute_split, missing_mask

incomplete = builtin_plugin("methods.common.incomplete")
mixed_batches, reconstruct = incomplete.mixed_batches, incomplete.reconstruct

SMALL = {"D": 16, "layers": 2, "epochs": 2, "batch": 40, "lr": 1e-3, "stage2_epochs": 1, "lr2": 1e-3}


@pytest.fixture(scope="module")
def parts():
    cls = get_dataset("synthetic")
    data = cls(build(cls.Params, {"n": 200, "image_dim": 48, "text_dim": 32}, "ds")).load()
    split = compute_split(data, SplitSpec())
    train = data.subset(split.train)
    ip, tp = missing_mask(train.n, MissingSpec(0.2, 0.4, 0.4))
    return train, data.subset(split.val), train.with_missing(ip, tp)


def _method(name, **params):
    entry = get_method(name)
    return entry.cls(build(entry.cls.Params, {**SMALL, **params, **entry.fixed}, name))


def test_variants_change_the_model_they_claim_to():
    cls = get_dataset("synthetic")
    train = cls(build(cls.Params, {"n": 60, "image_dim": 8, "text_dim": 6}, "ds")).load()
    ctx = FitContext()
    full = _method("pgnn_con").build(train, ctx)
    assert full.gan and full.gnn.aggregate is not None and full.graph == "probabilistic"
    assert not _method("pgnn_con/no_gan").build(train, ctx).gan
    assert not hasattr(_method("ignn_con/no_gan").build(train, ctx), "dec_img2txt")
    assert _method("pgnn_con/no_gnn").build(train, ctx).graph == "none"
    assert _method("ignn_con/no_layer_agg").build(train, ctx).gnn.aggregate is None
    assert _method("ignn_con").build(train, ctx).graph == "iterative"
    assert _method("pgnn_con/binary_con").params.positives == "binary"
    assert _method("ignn_con/no_con").params.con_weight == 0.0
    assert _method("pgnn_con/no_recon").params.reconstruct is False
    dagnn = _method("dagnn").params
    assert (dagnn.alpha, dagnn.con_weight, dagnn.nll_weight, dagnn.beta) == (1.0, 0.0, 0.2, 0.2)


def test_released_presets_per_dataset():
    cls = get_method("pgnn_con").cls
    assert cls.presets["mirflickr"] == {"alpha": 0.5, "beta": 2.0, "batch": 100, "tau": 0.22, "lr2": 1e-7}
    assert cls.presets["nuswide"]["batch"] == 2048 and cls.presets["mscoco"]["alpha"] == 2.8
    p = cls.Params()
    assert (p.epochs, p.t, p.layers, p.k, p.gamma, p.lse_scale, p.D, p.lr, p.patience) == (
        40, 0.4, 5, 8, 0.14, 1.06, 1024, 5e-5, None)


def test_label_input_falls_back_without_embeddings(parts):
    from dataclasses import replace

    train = replace(parts[0], label_embeddings=None)
    m = _method("pgnn_con", label_dim=11)
    assert m.build(train, FitContext()).h0.shape == (train.num_labels, 11)
    assert _method("pgnn_con", label_input="onehot").build(train, FitContext()).h0.shape == (
        train.num_labels, train.num_labels)
    with pytest.raises(ConfigError, match="label_input"):
        _method("pgnn_con", label_input="given").build(train, FitContext())


def test_missing_rows_do_not_influence_stage1_losses(parts):
    _, _, inc = parts
    m = _method("pgnn_con", nll_weight=0.5)
    m.build(inc, FitContext())
    m.model.train()
    x, t = torch.as_tensor(inc.image[:40]), torch.as_tensor(inc.text[:40])
    y = torch.as_tensor(inc.labels[:40]).float()
    im, tm = torch.as_tensor(inc.image_present[:40]), torch.as_tensor(inc.text_present[:40])
    torch.manual_seed(0)
    base = {k: v.item() for k, v in m.batch_losses(x, t, y, im, tm, im, tm).items()}
    x2, t2 = x.clone(), t.clone()
    x2[~im] = 5.0  # garbage in the absent rows
    t2[~tm] = -3.0
    torch.manual_seed(0)
    other = {k: v.item() for k, v in m.batch_losses(x2, t2, y, im, tm, im, tm).items()}
    assert other == pytest.approx(base, rel=1e-5)


def test_reconstruction_fills_only_missing_rows(parts):
    _, val, inc = parts
    m = _method("pgnn_con")
    m.fit(inc, val, FitContext())
    x, t = torch.as_tensor(inc.image), torch.as_tensor(inc.text)
    im, tm = torch.as_tensor(inc.image_present), torch.as_tensor(inc.text_present)
    xr, tr = reconstruct(m.model, x, t, im, tm)
    assert torch.equal(xr[im], x[im]) and torch.equal(tr[tm], t[tm])
    assert xr[~im].abs().sum() > 0 and tr[~tm].abs().sum() > 0


def test_mixed_batches_draw_paired_image_only_text_only_one_two_two():
    groups = [torch.arange(0, 10), torch.arange(10, 50), torch.arange(50, 100)]
    batches = mixed_batches(groups, [1, 2, 2], 50, 4, torch.Generator().manual_seed(0))
    for b in batches:
        assert ((b < 10).sum(), ((b >= 10) & (b < 50)).sum(), (b >= 50).sum()) == (10, 20, 20)
    # an empty group's share goes to the others
    only = mixed_batches([torch.arange(5), torch.arange(0), torch.arange(5, 30)], [1, 2, 2], 30, 2,
                             torch.Generator().manual_seed(0))
    assert all(len(b) == 30 for b in only)


def test_incomplete_training_runs_stage2_after_stage1(parts):
    _, val, inc = parts
    ctx = FitContext()
    _method("ignn_con", epochs=2, stage2_epochs=2).fit(inc, val, ctx)
    assert [r["step"] for r in ctx.history] == [1, 2, 3, 4]
    ctx_complete = FitContext()
    _method("ignn_con", epochs=2, stage2_epochs=2).fit(parts[0], val, ctx_complete)
    assert [r["step"] for r in ctx_complete.history] == [1, 2]


def test_fit_is_deterministic_for_a_seed(parts):
    train, val, _ = parts
    outs = []
    for _ in range(2):
        m = _method("pgnn_con", epochs=1)
        m.fit(train, val, FitContext(seed=3))
        outs.append(m.encode(image=val.image)[0])
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("name", ["pgnn_con", "ignn_con"])
def test_fit_logs_the_label_adjacency_for_the_report_heatmap(parts, name):
    train, val, _ = parts
    m = _method(name, epochs=1)
    ctx = FitContext(seed=0)
    m.fit(train, val, ctx)
    art = ctx.artifacts["label_adjacency"]
    values = np.asarray(art["data"])
    assert art["axis_labels"] == [str(n) for n in train.label_names]
    c = train.labels.shape[1]
    assert values.shape == (c, c)
    np.testing.assert_allclose(values, m.model.adjacency().detach().numpy(), rtol=1e-6, atol=1e-7)


def test_a_model_without_a_label_graph_logs_no_adjacency(parts):
    train, val, _ = parts
    ctx = FitContext(seed=0)
    _method("pgnn_con/no_gnn", epochs=1).fit(train, val, ctx)
    assert "label_adjacency" not in ctx.artifacts


def test_epochs_zero_leaves_an_untrained_model_that_training_beats():
    cls = get_dataset("synthetic")
    data = cls(build(cls.Params, {"n": 400, "image_dim": 48, "text_dim": 32, "seed": 1}, "ds")).load()
    split = compute_split(data, SplitSpec())
    train, val = data.subset(split.train), data.subset(split.val)
    params = {"D": 64, "layers": 2, "batch": 50, "lr": 1e-3}
    untrained, ctx = _method("pgnn_con", epochs=0, **params), FitContext(seed=0)
    untrained.fit(train, val, ctx)
    assert ctx.history == [] and ctx.best_epoch is None
    trained = _method("pgnn_con", epochs=8, **params)
    trained.fit(train, val, FitContext(seed=0))
    before, after = validation_map(untrained, val), validation_map(trained, val)
    assert after > before + 0.05, (before, after)
