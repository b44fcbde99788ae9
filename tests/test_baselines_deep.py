"""The deep baselines (DSCMR, ACMR, ALGCN): losses against hand-derived values, the adversarial
gradient of ACMR, their released defaults, and training on what the missing-data policies leave.
(Training every method, complete and incomplete, is tests/test_every_method.py.)"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import builtin_plugin

from bench.method import FitContext
from bench.params import build
from bench.registry import get_dataset, get_method
from bench.run import training_data
from bench.splits import MissingSpec, SplitSpec, compute_split, missing_mask

algcn = builtin_plugin("methods.algcn")
baseline_losses = builtin_plugin("methods.common.baseline_losses")

MISSING = {"paired": 0.2, "image_only": 0.4, "text_only": 0.4, "seed": 0}


def t64(rows):
    return torch.tensor(rows, dtype=torch.float64)


# --- the 3 x 2 example shared by DSCMR's and ALGCN's pairwise terms -----------------------------
# Items 0, 1, 2 with labels {0}, {1}, {0, 1}: S = y y^T = [[1,0,1],[0,1,1],[1,1,2]] (item 2 shares
# TWO labels with itself). Image features u point along e1, e2, e1; text features v along e1, e2,
# -e1 (v_0 has norm 2: cosines ignore it). So every theta = cos / 2 is 0 or +-1/2, and each entry
# log(1 + e^theta) - S theta is one of
#   A = log(1 + e^0.5) - s/2,  Z = log 2,  Bm = log(1 + e^-0.5) + s/2.
# Summing the nine entries of each block by hand:
#   (u,u): 5 log(1+e^.5) + 4 log 2 - 3;   (u,v): 3 log(1+e^.5) + 2 log(1+e^-.5) + 4 log 2 + 0;
#   (v,v): 3 log(1+e^.5) + 2 log(1+e^-.5) + 4 log 2 - 1;   each block is a mean over 9 pairs.
Y = t64([[1, 0], [0, 1], [1, 1]])
U = t64([[1, 0], [0, 1], [1, 0]])
V = t64([[2, 0], [0, 1], [-1, 0]])
LA, LZ, LB = math.log(1 + math.exp(0.5)), math.log(2.0), math.log(1 + math.exp(-0.5))
J2 = (11 * LA + 4 * LB + 12 * LZ - 4) / 9


def test_dscmr_loss_equals_the_hand_derived_value():
    p_img = Y + t64([[0.3, 0.4], [0, 0], [0.6, -0.8]])  # errors of norm 0.5, 0, 1  -> mean 1/2
    p_txt = Y + t64([[0, 0], [3, 4], [0, 0]])           # errors of norm 0, 5, 0    -> mean 5/3
    j1 = 0.5 + 5 / 3
    j3 = (1 + 0 + 2) / 3                                 # |u_i - v_i| = 1, 0, 2
    parts = baseline_losses.dscmr_loss(U, V, p_img, p_txt, Y)
    assert float(parts["label"]) == pytest.approx(j1, rel=1e-12)
    assert float(parts["pair"]) == pytest.approx(j3, rel=1e-12)
    assert float(parts["nll"]) == pytest.approx(J2, rel=1e-6)  # count-valued S, i = j kept
    assert float(parts["loss"]) == pytest.approx(j1 + 1e-3 * J2 + 0.1 * j3, rel=1e-6)


def test_dscmr_masked_loss_ignores_absent_rows():
    im, tm = torch.tensor([True, False, True]), torch.tensor([True, True, False])
    base = baseline_losses.dscmr_loss(U, V, U, V, Y, image_mask=im, text_mask=tm)
    junk_u, junk_v = U.clone(), V.clone()
    junk_u[1], junk_v[2] = t64([7, -3]), t64([0.1, 9])
    moved = baseline_losses.dscmr_loss(junk_u, junk_v, junk_u, junk_v, Y, image_mask=im, text_mask=tm)
    assert float(moved["loss"]) == pytest.approx(float(base["loss"]), rel=1e-12)
    assert float(base["pair"]) == pytest.approx(1.0)  # only row 0 is paired: |u_0 - v_0| = 1


# --- ALGCN ----------------------------------------------------------------------------------------

def test_algcn_adjacency_divides_by_the_column_label_count():
    # labels {0}, {0}, {0, 1}: c_01 = 1, n = (3, 1); c_01 / n_1 = 1 >= 0.4, c_10 / n_0 = 1/3 < 0.4
    cooc, nums = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([3.0, 1.0])
    np.testing.assert_allclose(algcn.algcn_adjacency(cooc, nums, 0.4).numpy(), [[1.5, 0.5], [0.0, 1.5]])
    np.testing.assert_allclose(algcn.algcn_adjacency(cooc, nums, 0.3).numpy(), [[1.5, 0.5], [0.5, 1.5]])


A2 = t64([[1.5, 0.5], [0.0, 1.5]])
B2 = t64([[0.0, 1.0], [-2.0, 0.0]])
# M = ReLU(A + 0.5 B) = [[1.5, 1.0], [0, 1.5]] (the -1 is cut), row sums D = (2.5, 1.5),
# Â_ij = M_ji / sqrt(D_i D_j) = [[0.6, 0], [1/sqrt(3.75), 1]].
R = 1 / math.sqrt(3.75)
ADJ = [[0.6, 0.0], [R, 1.0]]


def test_algcn_learnable_adjacency_by_hand():
    np.testing.assert_allclose(algcn.learnable_adjacency(A2, B2, 0.5).numpy(), ADJ, rtol=1e-12)


NOISES = [t64([[0, 1], [1, 0]]), t64([[0, 0], [0, 0]]), t64([[1, 1], [1, 1]])]
# targets min(A + N, 0.5): all 0.5; [[0.5, 0.5], [0, 0.5]]; all 0.5
L_SS = (2 * (0.1 ** 2 + 0.5 ** 2 + (R - 0.5) ** 2 + 0.5 ** 2) + (0.1 ** 2 + 0.5 ** 2 + R ** 2 + 0.5 ** 2)) / 4


def test_algcn_structure_loss_by_hand():
    adj = algcn.learnable_adjacency(A2, B2, 0.5)
    assert float(baseline_losses.structure_loss(adj, A2, NOISES)) == pytest.approx(L_SS, rel=1e-12)


def test_algcn_prediction_adds_eps_to_the_norm_product():
    f, w = t64([[1e-3, 0.0]]), t64([[1e-3, 0.0]])
    # f.w = 1e-6 = |f||w|: added eps gives 1e-6 / 2e-6 = 0.5 (a clamp or normalize would give 1)
    assert float(baseline_losses.eps_cosine_prediction(f, w)) == pytest.approx(0.5, rel=1e-9)


def test_algcn_loss_equals_the_hand_derived_value():
    w = t64([[1, 0], [0, 2]])
    e = 1e-6
    # image predictions: [1/(1+e), 0], [0, 2/(2+e)], [1/(1+e), 0]; text: [2/(2+e), 0], [0, 2/(2+e)], [-1/(1+e), 0]
    cla_img = (e / (1 + e) + e / (2 + e) + math.hypot(e / (1 + e), 1)) / 3
    cla_txt = (e / (2 + e) + e / (2 + e) + math.hypot(1 + 1 / (1 + e), 1)) / 3
    pred_img, pred_txt = baseline_losses.eps_cosine_prediction(U, w), baseline_losses.eps_cosine_prediction(V, w)
    parts = baseline_losses.algcn_loss(U, V, pred_img, pred_txt, Y, algcn.learnable_adjacency(A2, B2, 0.5), A2, NOISES)
    assert float(parts["cla"]) == pytest.approx(cla_img + cla_txt, rel=1e-12)
    assert float(parts["nll"]) == pytest.approx(J2, rel=1e-6)
    assert float(parts["ss"]) == pytest.approx(L_SS, rel=1e-12)
    assert float(parts["loss"]) == pytest.approx(cla_img + cla_txt + 0.2 * J2 + 0.5 * L_SS, rel=1e-6)


def test_algcn_structure_loss_trains_the_graph_residual(tiny):
    train = tiny[0]
    m = _make("algcn")
    model = m.build(train, FitContext())
    adj = model.adjacency()
    loss = baseline_losses.structure_loss(adj, model.a, [torch.zeros_like(model.a)])
    loss.backward()
    assert model.b.grad is not None and float(model.b.grad.abs().sum()) > 0


# --- ACMR -----------------------------------------------------------------------------------------

def test_acmr_pieces_by_hand():
    v, t = t64([[0.5, 0.5], [0.0, -0.5]]), t64([[0.5, 0.0], [0.25, 0.25]])
    y = t64([[1, 0], [0, 1]])
    # d_ij = sum v_i + sum t_j - v_i.t_j: d_00 = 1 + .5 - .25, d_01 = 1 + .5 - .25, d_10 = -.5 + .5 - 0,
    # d_11 = -.5 + .5 + .125; m = [[0, 1], [1, 0]]: hinge max(0, .1 - m d) = [.1, 0, .1, .1]
    assert float(baseline_losses.acmr_dissimilarity(v, t, y)) == pytest.approx(0.3 / 4)
    assert float(baseline_losses.frobenius_distance(v, t)) == pytest.approx(math.sqrt(0.25 + 0.0625 + 0.5625))
    assert baseline_losses.dann_lambda(0.0) == 0.0
    assert baseline_losses.dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    # single-label CE: -log softmax at the true class; multi-label: sum over labels of BCE
    logits = t64([[0.0, 0.0]])
    assert float(baseline_losses.acmr_label_loss(logits, t64([[1, 0]]), True)) == pytest.approx(math.log(2))
    assert float(baseline_losses.acmr_label_loss(logits, t64([[1, 1]]), False)) == pytest.approx(2 * math.log(2))


def _acmr_with_batch(tiny, **params):
    train = tiny[0]
    m = _make("acmr", **params)
    m.build(train, FitContext())
    x, t = torch.as_tensor(train.image[:40]), torch.as_tensor(train.text[:40])
    return m, x, t, torch.as_tensor(train.labels[:40]).float()


def _grads(params):
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in params])


def test_acmr_adversarial_gradient_reaches_the_projectors_reversed(tiny):
    m, x, t, y = _acmr_with_batch(tiny)
    m.model.double()  # float64, so that subtracting the embedding gradient leaves no rounding noise
    x, t = x.double(), t.double()
    projectors = [*m.model.img.parameters(), *m.model.txt.parameters()]
    lam = 0.7

    def grad_of(key, lam_):
        m.model.zero_grad(set_to_none=True)
        m.batch_losses(x, t, y, lam_)[key].backward()
        return _grads(projectors)

    total, emb = grad_of("loss", lam), grad_of("emb", lam)
    # the modality loss of the same batch WITHOUT reversal: its plain gradient on the projectors
    m.model.zero_grad(set_to_none=True)
    baseline_losses.modality_loss(m.model.domain(m.model.img(x)), m.model.domain(m.model.txt(t))).backward()
    adv = _grads(projectors)
    assert float(adv.abs().max()) > 0
    np.testing.assert_allclose((total - emb).numpy(), (-lam * adv).numpy(), rtol=1e-7, atol=1e-12)


def test_acmr_one_step_moves_projectors_only_through_the_game_and_trains_the_classifier(tiny):
    # with every embedding-loss weight zero, only the reversed modality gradient can move the projectors
    m, x, t, y = _acmr_with_batch(tiny, label_weight=0.0, sim_weight=0.0, dis_weight=0.0)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    m.train_step(x, t, y, lam=0.0)
    assert torch.equal(m.model.img[0].weight, before["img.0.weight"])  # lambda 0 (first epoch): no game
    m.train_step(x, t, y, lam=0.5)
    assert not torch.equal(m.model.img[0].weight, before["img.0.weight"])
    assert not torch.equal(m.model.txt[0].weight, before["txt.0.weight"])
    assert not torch.equal(m.model.domain[0].weight, before["domain.0.weight"])
    m2, x, t, y = _acmr_with_batch(tiny)
    w0 = m2.model.classifier.weight.clone()
    m2.train_step(x, t, y, lam=0.0)
    assert not torch.equal(m2.model.classifier.weight, w0)  # the release never trained it


def test_acmr_common_space_is_tanh_bounded_and_uses_softmax_on_single_label_data(tiny):
    train, _, val, test = tiny
    m = _make("acmr")
    m.fit(train, val, FitContext())
    img, txt = m.encode(image=test.image, text=test.text)
    assert np.abs(img).max() < 1 and np.abs(txt).max() < 1
    assert m.single_label is False  # the synthetic data is multi-label
    one = train.subset(np.flatnonzero(train.labels.sum(1) == 1))
    m.build(one, FitContext())
    assert m.single_label is True


# --- shared helpers, released defaults, missing-data policies ---------------------------------------

def _make(name, **params):
    cls = get_method(name).cls
    return cls(build(cls.Params, {**cls.test_params, **params}, name))


@pytest.fixture(scope="module")
def tiny():
    cls = get_dataset("synthetic")
    data = cls(build(cls.Params, {"n": 200, "image_dim": 24, "text_dim": 16}, "ds")).load()
    split = compute_split(data, SplitSpec())
    train = data.subset(split.train)
    ip, tp = missing_mask(train.n, MissingSpec(**MISSING))
    return train, train.with_missing(ip, tp), data.subset(split.val), data.subset(split.test)


@pytest.mark.parametrize("policy", ["drop", "zero"])
def test_a_deep_baseline_trains_on_what_a_missing_data_policy_leaves(policy, tiny):
    """Without `supports_missing` the harness hands over complete rows: the incomplete ones dropped,
    or kept zero-filled as pairs."""
    train = tiny[0]
    spec = SimpleNamespace(missing=MISSING, missing_policy=policy)
    given = training_data(train, SimpleNamespace(train=np.arange(train.n)), spec, False)
    assert given.image_present is None and given.n == (train.n if policy == "zero" else round(0.2 * train.n))
    m = _make("dscmr", epochs=1)
    ctx = FitContext(seed=0)
    m.fit(given, tiny[2], ctx)
    img, txt = m.encode(image=tiny[3].image, text=tiny[3].text)
    assert np.isfinite(img).all() and np.isfinite(txt).all() and ctx.best_epoch == 1


RELEASED_DEFAULTS = {  # (epochs, batch, lr, adam_beta1) of each release
    "dscmr": (500, 100, 1e-4, 0.5), "acmr": (50, 64, 1e-4, 0.5), "algcn": (30, 100, 5e-5, 0.5)}


@pytest.mark.parametrize(("name", "expected"), RELEASED_DEFAULTS.items())
def test_defaults_are_the_released_settings(name, expected):
    p = get_method(name).cls.Params()
    assert (p.epochs, p.batch, p.lr, p.adam_beta1) == expected


def test_algcn_presets_and_graph_constants_are_the_released_ones():
    cls = get_method("algcn").cls
    assert cls.presets["nuswide"] == {"epochs": 40, "batch": 1024}
    assert cls.presets["mscoco"] == {"epochs": 50, "batch": 1024}
    p = cls.Params()
    assert (p.t, p.gamma, p.nll_weight, p.ss_weight, p.b_lr_factor) == (0.4, 0.5, 0.2, 0.5, 100.0)


def test_algcn_label_input_learnable_or_given_frozen(tiny):
    from dataclasses import replace

    from bench.errors import ConfigError

    train = tiny[0]
    learn = _make("algcn").build(train, FitContext())
    assert isinstance(learn.h0, torch.nn.Parameter) and learn.h0.shape == (train.num_labels, 8)
    h0 = learn.h0.detach()
    assert 0 <= float(h0.min()) and float(h0.max()) <= 1  # U(0, 1)
    given = _make("algcn", label_input="given").build(train, FitContext())
    assert "h0" not in dict(given.named_parameters())  # frozen
    np.testing.assert_array_equal(given.h0.numpy(), train.label_embeddings)
    with pytest.raises(ConfigError, match="label_input"):
        _make("algcn", label_input="given").build(replace(train, label_embeddings=None), FitContext())
