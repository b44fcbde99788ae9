"""The GNN family computes what the authors' release (LivXue/GNN4CMR) computes.

The last test re-implements the release's forward pass and loss straight from the equations in
the module docstring of methods/gnn_con.py (our own code, written here, not the release's) and
checks, in float64 on one batch with the model's weights copied across, that
`pgnn_con/binary_con` and `ignn_con/binary_con` give the same total loss and the same gradient
for every parameter.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import builtin_plugin

from bench.data import make_data
from bench.method import FitContext
from bench.params import build
from bench.registry import get_method

losses = builtin_plugin("methods.common.losses")
incomplete = builtin_plugin("methods.common.incomplete")
fill_rows, plan_batches, run_stage2 = incomplete.fill_rows, incomplete.plan_batches, incomplete.run_stage2

# 4 items, 3 labels: {0,1}, {0}, {0,2}, {2}
TINY = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]])


def _method(name, **params):
    entry = get_method(name)
    return entry.cls(build(entry.cls.Params, {**params, **entry.fixed}, name))


def _data(labels, d_img=8, d_txt=6, emb=True, seed=0, **kw):
    rng = np.random.default_rng(seed)
    n, c = labels.shape
    return make_data("tiny", rng.normal(size=(n, d_img)), rng.normal(size=(n, d_txt)), labels,
                     label_embeddings=rng.normal(size=(c, 7)) if emb else None, **kw)


# --- item 5: GAT mask and learnable fallback label input -------------------------------------------


def test_pgnn_gat_masks_with_the_raw_graph_and_gcn_uses_the_normalised_one():
    # TINY: counts (3, 1, 2); ratio_ij = cooc_ij / count_j >= .4 at (0,1) and (0,2) only, so the
    # raw graph 0.5 A + I = [[1, .5, .5], [0, 1, 0], [0, 0, 1]]: label 0 attends to 1 and 2.
    # Â (the GCN's) = D^-1/2 A^T D^-1/2 has the transposed pattern: row 0 only its self-loop.
    data = _data(TINY)
    gat = _method("pgnn_con", D=4, layers=2, conv="gat").build(data, FitContext())
    np.testing.assert_allclose(gat.adj.numpy(), [[1, 0.5, 0.5], [0, 1, 0], [0, 0, 1]])
    gcn = _method("pgnn_con", D=4, layers=2).build(data, FitContext())
    r = 0.5 / math.sqrt(2)
    np.testing.assert_allclose(gcn.adj.numpy(), [[0.5, 0, 0], [r, 1, 0], [r, 0, 1]], atol=1e-6)


def test_pgnn_fallback_label_input_is_learnable_and_given_embeddings_are_fixed():
    no_emb = _data(TINY, emb=False)
    model = _method("pgnn_con", D=4, layers=2, label_dim=5).build(no_emb, FitContext())
    assert isinstance(model.h0, torch.nn.Parameter) and model.h0.requires_grad
    assert float(model.h0.detach().min()) >= 0.0 and float(model.h0.detach().max()) < 1.0  # U(0, 1) as released
    model.classifiers().pow(2).sum().backward()
    assert model.h0.grad is not None and model.h0.grad.abs().sum() > 0
    given = _method("pgnn_con", D=4, layers=2).build(_data(TINY), FitContext())
    assert "h0" in dict(given.named_buffers()) and "h0" not in dict(given.named_parameters())
    onehot = _method("pgnn_con", D=4, layers=2, label_input="onehot").build(no_emb, FitContext())
    assert "h0" in dict(onehot.named_buffers())


def test_adversarial_loss_labels_by_modality():
    # real logits (0, log 3) labelled 0: P(0) = 1/4 -> log 4; fake logits (0, 0) labelled 1: log 2.
    real = torch.tensor([[0.0, math.log(3.0)]])
    fake = torch.tensor([[0.0, 0.0]])
    assert losses.adversarial_loss(real, fake, real_class=0).item() == pytest.approx(math.log(8.0), rel=1e-6)


# --- item 4: incomplete-modal training ---------------------------------------------------------------


@pytest.fixture()
def incomplete():
    rng = np.random.default_rng(1)
    y = (rng.random((12, 3)) < 0.5).astype(np.uint8)
    y[:, 0] = 1
    data = _data(y, d_img=8, d_txt=6)
    im = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1], bool)  # rows 0-3 paired, 4-7 text-only
    tm = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)  # rows 8-11 image-only
    return data.with_missing(im, tm)


def _tensors(data):
    return (torch.as_tensor(data.image), torch.as_tensor(data.text), torch.as_tensor(data.image_present),
            torch.as_tensor(data.text_present))


def test_incomplete_defaults_follow_the_release():
    for name in ("pgnn_con", "ignn_con", "dagnn"):
        p = get_method(name).cls.Params()
        assert (p.absent_rows, p.stage2_recon, p.recon_as_real, p.stage2_epochs) == (
            "zero_filled", "per_batch", True, 40)


def _plan(method, im, tm, stage, prefilled=False):
    """The one batch of all 12 rows as `fit` plans it for `stage`."""
    (planned,) = plan_batches([torch.arange(len(im))], "cpu", im, tm, lambda bi, bt: method.presence(bi, bt, stage),
                              fill=method.fills(stage) and not prefilled)
    return planned


def test_stage1_treats_zero_filled_rows_as_present_by_default(incomplete):
    m = _method("pgnn_con", D=4, layers=2)
    m.build(incomplete, FitContext())
    _, _, im, tm = _tensors(incomplete)
    planned = _plan(m, im, tm, stage=1)
    assert planned.fill is None  # nothing reconstructed in stage 1
    assert planned.masks is None  # every row present and real: the complete path, zero rows fed in as features
    assert all(bool(mask.all()) for mask in m.presence(im, tm, stage=1))
    masked = _method("pgnn_con", D=4, layers=2, absent_rows="masked")
    masked.build(incomplete, FitContext())
    masks = _plan(masked, im, tm, stage=1).masks
    assert torch.equal(masks.im, im) and torch.equal(masks.tm, tm)
    assert torch.equal(masks.im_real, im) and torch.equal(masks.tm_real, tm)


def test_stage2_reconstructs_per_batch_in_train_mode_and_counts_filled_rows_as_real(incomplete):
    m = _method("pgnn_con", D=4, layers=2)
    model = m.build(incomplete, FitContext())
    model.train()
    twin = copy.deepcopy(model)
    x, t, im, tm = _tensors(incomplete)
    planned = _plan(m, im, tm, stage=2)
    assert [c.tolist() for c in planned.fill[0]] == [[8, 9, 10, 11]]  # image-only rows get a text
    assert [c.tolist() for c in planned.fill[1]] == [[4, 5, 6, 7]]  # text-only rows get an image
    xs, ts = fill_rows(model, x, t, *planned.fill, train_mode=True)  # what train_step does first
    assert model.training  # mode restored
    # expected fill: the group's rows through encoder and decoder as one train-mode batch
    with torch.no_grad():
        text_for_images = twin.dec_img2txt(twin.enc_img(x[8:12]))
        images_for_texts = twin.dec_txt2img(twin.enc_txt(t[4:8]))
        twin.eval()
        eval_mode = twin.dec_img2txt(twin.enc_img(x[8:12]))
    assert torch.allclose(ts[8:12], text_for_images, atol=1e-6)
    assert torch.allclose(xs[4:8], images_for_texts, atol=1e-6)
    assert not torch.allclose(ts[8:12], eval_mode, atol=1e-4)
    assert torch.equal(xs[:4], x[:4]) and torch.equal(ts[:8], t[:8])  # present rows untouched
    assert planned.masks is None  # filled rows are present and real for the GAN: the complete path
    # recon_as_real false: filled rows stay out of the GAN's real terms
    keep_out = _method("pgnn_con", D=4, layers=2, recon_as_real=False)
    keep_out.build(incomplete, FitContext())
    masks = _plan(keep_out, im, tm, stage=2).masks
    assert bool(masks.im.all() and masks.tm.all()) and torch.equal(masks.im_real, im) and torch.equal(masks.tm_real, tm)
    # no reconstruction (no_recon): nothing filled, zero rows as present
    none = _method("pgnn_con/no_recon", D=4, layers=2)
    none.build(incomplete, FitContext())
    planned = _plan(none, im, tm, stage=2)
    assert planned.fill is None and planned.masks is None


def test_per_epoch_reconstruction_fills_in_eval_mode_once_per_stage2_epoch(incomplete):
    m = _method("pgnn_con", D=4, layers=2, stage2_recon="per_epoch", absent_rows="masked", recon_as_real=False,
                batch=10, stage2_epochs=1)
    model = m.build(incomplete, FitContext())
    x, t, im, tm = _tensors(incomplete)
    model.eval()
    with torch.no_grad():
        text_for_images = model.dec_img2txt(model.enc_img(x[8:12]))
    seen = []

    def train_batches(batches, opt, imgs, txts, stage, prefilled=False):
        seen.append((batches, imgs, txts, stage, prefilled))
        return {"loss": 0.0}

    run_stage2(FitContext(), model, m.params, x, t, im, tm, train_batches, lambda: 0.0,
               torch.Generator().manual_seed(0), best_first=1.0, offset=3)
    ((batches, imgs, txts, stage, prefilled),) = seen
    assert stage == 2 and prefilled  # filled already: the steps must not fill again
    assert torch.allclose(txts[8:12], text_for_images, atol=1e-6) and torch.equal(imgs[:4], x[:4])
    assert [len(b) for b in batches] == [10, 10]  # ceil(12 / 10) steps of 2 paired, 4 image-only, 4 text-only
    assert [((b < 4).sum().item(), (b >= 8).sum().item()) for b in batches] == [(2, 4), (2, 4)]
    planned = _plan(m, im, tm, stage=2, prefilled=True)
    assert planned.fill is None and torch.equal(planned.masks.im_real, im) and bool(planned.masks.im.all())


# --- done means: one batch, copied weights, float64: loss and every gradient ---------------------------


def _bn(x, mod):
    """BatchNorm1d in train mode: batch mean, biased variance, eps 1e-5."""
    mean = x.mean(0)
    var = ((x - mean) ** 2).mean(0)
    return (x - mean) / torch.sqrt(var + 1e-5) * mod["weight"] + mod["bias"]


def _lin(x, mod):
    return x @ mod["weight"].T + mod["bias"]


def _reverse(z):
    return 2 * z.detach() - z  # forward z, backward -grad


def _cos(a, b, eps=0.0):
    return (a @ b.T) / (a.norm(dim=1)[:, None] * b.norm(dim=1)[None, :] + eps)


def _norm_adj(a):
    d = torch.diag(a.sum(1) ** -0.5)
    return d @ a.T @ d


def _contrastive_term(sim, pos):
    """- mean_i sum_j P_ij (sim_ij - log sum_j exp(1.06 sim_ij)), P = pos / row sums (0 if none)."""
    log_denom = torch.log(torch.exp(1.06 * sim).sum(1, keepdim=True))
    rows = pos.sum(1, keepdim=True)
    p = torch.where(rows > 0, pos / torch.where(rows > 0, rows, torch.ones_like(rows)), torch.zeros_like(pos))
    return -((p * (sim - log_denom)).sum(1)).mean()


def _reference_loss(w, x, t, y, labels_train, h0_init, graph, alpha, beta, tau, gamma, thr, layers, k):
    """The release's forward + loss written from its equations (binary positives)."""
    u = F.relu(_lin(_bn(x, w["enc_img.0"]), w["enc_img.1"]))
    v = F.relu(_lin(_bn(t, w["enc_txt.0"]), w["enc_txt.1"]))
    if graph == "probabilistic":
        yt = torch.as_tensor(labels_train, dtype=torch.float64)
        c = yt.shape[1]
        a = torch.zeros(c, c, dtype=torch.float64)
        for i in range(c):
            for j in range(c):
                if i != j and (yt[:, i] * yt[:, j]).sum() / yt[:, j].sum() >= thr:
                    a[i, j] = 1.0
        adj = _norm_adj(0.5 * a + torch.eye(c, dtype=torch.float64))
        h = h0_init
    else:
        h = w["h0"]
        a0 = _cos(h0_init, h0_init)
        a0 = torch.where(a0 >= thr, a0, torch.zeros_like(a0))
        s = sum(_cos(h * w["w"][i], h * w["w"][i]) for i in range(k)) / k
        s = torch.where(s >= thr, s, torch.zeros_like(s))
        adj = _norm_adj(0.5 * a0 + 0.5 * s)
    hs = []
    for layer in range(layers):
        h = F.leaky_relu(adj @ (h @ w[f"gnn.convs.{layer}"]["weight"]), 0.2)
        hs.append(h)
    cls = _lin(torch.cat(hs, 1), w["gnn.aggregate"])
    l_cla = ((_cos(u, cls, 1e-6) - y).norm(dim=1)).mean() + ((_cos(v, cls, 1e-6) - y).norm(dim=1)).mean()

    un, vn = u / u.norm(dim=1, keepdim=True), v / v.norm(dim=1, keepdim=True)
    share = ((y @ y.T) > 0).double()
    no_self = share * (1 - torch.eye(len(y), dtype=torch.float64))
    l_con = (_contrastive_term(un @ vn.T / tau, share) + _contrastive_term(vn @ un.T / tau, share)
             + gamma * (_contrastive_term(un @ un.T / tau, no_self) + _contrastive_term(vn @ vn.T / tau, no_self)))

    def dec(z, name, act):
        return act(_lin(act(_lin(_bn(z, w[f"{name}.0"]), w[f"{name}.1"])), w[f"{name}.3"]))

    def disc(z, name):
        z = _bn(_reverse(z), w[f"{name}.1"])
        return _lin(F.relu(_lin(F.relu(_lin(z, w[f"{name}.2"])), w[f"{name}.4"])), w[f"{name}.6"])

    def ce(logits, cls_idx):
        return -(logits[:, cls_idx] - torch.logsumexp(logits, 1)).mean()

    image_like = dec(v, "dec_txt2img", F.relu)
    text_like = dec(u, "dec_img2txt", lambda z: F.leaky_relu(z, 0.2))
    # modality classes: image 1, text 0
    l_gan = (ce(disc(x, "disc_img"), 1) + ce(disc(image_like, "disc_img"), 0)
             + ce(disc(t, "disc_txt"), 0) + ce(disc(text_like, "disc_txt"), 1))
    return alpha * l_cla + l_con + beta * l_gan


@pytest.mark.parametrize("name", ["pgnn_con/binary_con", "ignn_con/binary_con"])
def test_loss_and_every_gradient_match_the_release_equations_float64(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    n, c, d_img, d_txt = 12, 5, 64, 32
    labels = (rng.random((40, c)) < 0.35).astype(np.uint8)
    labels[:, 0] |= (labels.sum(1) == 0).astype(np.uint8)
    train = make_data("eq", np.abs(rng.normal(size=(40, d_img))), rng.normal(size=(40, d_txt)), labels,
                      label_embeddings=rng.normal(size=(c, 7)))
    params = dict(D=16, layers=5, k=3, alpha=0.5, beta=2.0, tau=0.22, gamma=0.14, t=0.4)
    method = _method(name, **params)
    model = method.build(train, FitContext(seed=0)).double().train()
    p = method.params
    h0_init = model.h0.detach().clone()
    adj = model.adjacency().detach()
    assert bool((adj - torch.diag(torch.diag(adj))).abs().gt(0).any())  # a graph with edges, not I
    x = torch.as_tensor(train.image[:n], dtype=torch.float64)
    t = torch.as_tensor(train.text[:n], dtype=torch.float64)
    y = torch.as_tensor(train.labels[:n], dtype=torch.float64)
    ours = method.batch_losses(x, t, y)["loss"]
    ours.backward()

    # the same weights, as fresh float64 leaves, grouped by module
    leaves, w = {}, {}
    for pname, param in model.named_parameters():
        leaf = param.detach().clone().requires_grad_(True)
        leaves[pname] = leaf
        mod, _, attr = pname.rpartition(".")
        if mod:
            w.setdefault(mod, {})[attr] = leaf
        else:
            w[attr] = leaf
    ref = _reference_loss(w, x, t, y, train.labels, h0_init, p.graph, p.alpha, p.beta, p.tau, p.gamma, p.t,
                          p.layers, p.k)
    ref.backward()

    assert abs(ours.item() - ref.item()) <= 1e-5, (ours.item(), ref.item())
    worst = 0.0
    for pname, param in model.named_parameters():
        g_ref = leaves[pname].grad
        assert param.grad is not None and g_ref is not None, pname
        worst = max(worst, float((param.grad - g_ref).abs().max()))
        assert torch.allclose(param.grad, g_ref, atol=1e-5, rtol=0), pname
    print(f"{name}: loss ours {ours.item():.12f} ref {ref.item():.12f}; max |grad diff| {worst:.3e}")
    assert worst <= 1e-5
