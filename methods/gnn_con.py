"""Multi-label contrastive learning with dual adversarial graph neural networks (TPAMI 2023),
its ablations, and its AAAI 2021 predecessor DAGNN.

Qian, Xue, Fang, Xu, "Integrating Multi-Label Contrastive Learning With Dual Adversarial Graph
Neural Networks for Cross-Modal Retrieval", TPAMI 45(4) 2023; written from the paper and the
facts of the released code (design/METHOD.md), not from the code itself.

Model (one screen):
    u = ReLU(Linear(BN(x))),  v = ReLU(Linear(BN(t)))                    encoders -> common space D
    C = Linear([H_1 .. H_L]),  H_{l+1} = LeakyReLU_0.2(Â H_l W_l)         label GNN, layer aggregation
    p = cos(u, C), cos(v, C)                                              inter-dependent classifiers
    L = alpha L_cla + con_weight L_con + nll_weight L_nll + beta L_gan
  P-GNN (`pgnn_con`): Â from thresholded training-label co-occurrence (fixed);
  I-GNN (`ignn_con`): Â from learnable cosine graphs of a learnable H0, recomputed each forward.
  GAT option (`conv: gat`): ELU after each attention layer; P-GNN masks attention with the raw
  0.5 A + I, I-GNN with its Â (as released).
  L_gan: decoders map u (v) into the text (image) INPUT space and end in their activation
  (LeakyReLU 0.2 / ReLU, as released); one discriminator per input space, behind gradient
  reversal, so a single Adam step trains both sides of the game. Its output classes are the
  modalities (image 1, text 0), as released.
  `dagnn`: alpha = 1, con_weight = 0, nll_weight = 0.2 (DSCMR pairwise loss), beta = 0.2.

Incomplete-modal training (`supports_missing`). Defaults follow the release; each of our
earlier choices stays available as a parameter:
  - stage 1 (`absent_rows`): `zero_filled` (default, as released and as METHOD.md says) trains
    on the missing features zero-filled, every row treated as if both modalities were present
    (zero rows enter BatchNorm statistics, L_cla, the contrastive terms and the GAN's real
    terms). `masked` (ours) encodes only present rows and every term skips absent ones: L_cla
    per modality over its present rows; cross-modal contrastive / NLL pairs need the anchor's
    modality in row i and the other modality in row j; intra-modal pairs need it in both;
    GAN real terms use present rows, fake terms rows whose source modality is present. It is
    defensible because a zero vector is not a feature: treating it as one teaches the encoders
    and the discriminators about an input that never occurs at test time.
  - stage 2 (SGD, lr2, `stage2_epochs`, default 40 as released): batches mix paired :
    image-only : text-only rows 1 : 2 : 2 (renormalised over the groups that exist).
    `stage2_recon: per_batch` (default, as released) fills each missing feature per batch with
    decoder(encoder(present modality)) in train mode (BatchNorm on that group's rows, running
    statistics updated), without gradient; `per_epoch` (ours) fills every missing feature once
    at the start of each stage-2 epoch in eval mode, so a batch sees reconstructions from one
    fixed model and BatchNorm statistics are not disturbed by the filling pass.
    `recon_as_real: true` (default, as released) lets reconstructed rows into the GAN's "real"
    terms; `false` (ours) keeps them out, so the discriminators only ever call true features
    real. Stage-2 epochs are numbered after stage 1; if no stage-2 epoch beats stage 1 on
    validation, the stage-1 weights are kept.
  - our earlier behaviour in full: absent_rows=masked, stage2_recon=per_epoch,
    recon_as_real=false, stage2_epochs=10.
  - `reconstruct: false` (`no_recon`) runs the same stage 2 without filling (rows stay
    zero-filled, treated per `absent_rows`). Without decoders (`gan: false`) there is nothing to
    reconstruct with, so it behaves like `reconstruct: false`.
  - complete training data: stage 2 is skipped.
Speed (issue 13): a batch whose rows all count as present and real takes `_complete_losses`,
with no mask logic and no host read of a device value; predictions and the four contrastive
terms share one matrix of [u; v]. Incomplete batches get `RowMasks` (counts and indices built on
the host once per epoch). `precision` (autocast bf16 / fp16) and `compile` (torch.compile of the
complete-path losses) are opt-in.
Deviations from the release: best epoch chosen on the validation split, not on test; stage 2
uses its loss weights in the intended order (the released main.py passes them shuffled);
soft positives (Jaccard) are the default as the paper describes (`positives: binary` is what
the release computes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from bench.data import CrossModalData
from bench.errors import ConfigError
from bench.method import FitContext, Method, Variant, run_epochs, validation_map
from bench.params import spec
from bench.registry import register_method

from .common.graphs import (
    cooccurrence,
    cosine_matrix,
    iterative_adjacency,
    probabilistic_adjacency,
    probabilistic_graph,
    threshold,
)
from .common.layers import ENCODE_BATCH, LabelGNN, decoder, discriminator, encode_in_batches, encoder
from .common.losses import (
    adversarial_loss,
    classification_loss,
    cosine_prediction,
    dscmr_nll,
    fused_contrastive,
    label_similarity,
    multilabel_contrastive,
)


@dataclass
class GNNConParams:
    epochs: int = spec(40, help="stage-1 training epochs (0 = untrained model)", low=0)
    batch: int = spec(100, help="minibatch size", low=2)
    lr: float = spec(5e-5, help="Adam learning rate", low=0.0)
    adam_beta1: float = spec(0.5, help="Adam beta1", low=0.0, high=1.0)
    adam_beta2: float = spec(0.999, help="Adam beta2", low=0.0, high=1.0)
    D: int = spec(1024, help="common-space dimension (also the label GNN width)", low=1)
    alpha: float = spec(0.5, help="weight of the classification loss L_cla", low=0.0)
    beta: float = spec(2.0, help="weight of the adversarial loss L_gan", low=0.0)
    tau: float = spec(0.22, help="temperature of the contrastive loss", low=1e-6)
    gamma: float = spec(0.14, help="weight of the intra-modal contrastive terms", low=0.0)
    t: float = spec(0.4, help="threshold of the label graphs (co-occurrence ratio / cosine)", low=0.0, high=1.0)
    layers: int = spec(5, help="label GNN layers L", low=1)
    k: int = spec(8, help="I-GNN: number of learnable re-weighting vectors", low=1)
    graph: Literal["probabilistic", "iterative", "none"] = spec(
        "probabilistic", help="label graph: probabilistic (P-GNN), iterative (I-GNN), none (linear classifiers)")
    conv: Literal["gcn", "gat"] = spec("gcn", help="graph layer: graph convolution or graph attention")
    layer_agg: bool = spec(True, help="aggregate all GNN layers (multi-hop); false = last layer only")
    label_input: Literal["auto", "given", "onehot", "random"] = spec(
        "auto", help="GNN input H0: dataset label embeddings (auto: when present, else random), one-hot, "
        "random (U(0,1), learnable, as released)")
    label_dim: int = spec(300, help="dimension of random label embeddings", low=1)
    positives: Literal["soft", "binary"] = spec(
        "soft", help="contrastive positives: soft (graded label similarity) or binary (share a label)")
    similarity: Literal["jaccard", "cosine"] = spec("jaccard", help="soft label similarity")
    lse_scale: float = spec(1.06, help="factor on sim inside the contrastive log-sum-exp (released code: 1.06)",
                            low=0.0)
    con_weight: float = spec(1.0, help="weight of the contrastive loss L_con (0 = off)", low=0.0)
    nll_weight: float = spec(0.0, help="weight of DSCMR's pairwise NLL loss (DAGNN)", low=0.0)
    gan: bool = spec(True, help="dual adversarial networks (decoders + discriminators)")
    reconstruct: bool = spec(True, help="incomplete data: fill missing features from the decoders in stage 2")
    absent_rows: Literal["zero_filled", "masked"] = spec(
        "zero_filled", help="incomplete data: train on zero-filled absent rows as if present (release), or skip "
        "them in every term (masked)")
    stage2_recon: Literal["per_batch", "per_epoch"] = spec(
        "per_batch", help="stage-2 reconstruction: per batch in train mode (release) or once per epoch in eval mode")
    recon_as_real: bool = spec(True, help="stage 2: reconstructed rows count in the GAN's real terms (release)")
    lr2: float = spec(1e-7, help="stage-2 (incomplete data) SGD learning rate", low=0.0)
    stage2_epochs: int = spec(40, help="stage-2 epochs (incomplete training data only; release 40)", low=0)
    patience: int | None = spec(None, help="early stopping after this many epochs without improvement")
    precision: Literal["fp32", "bf16", "fp16"] = spec(
        "fp32", help="training-step arithmetic: fp32, or autocast to bf16 / fp16 (fp16: CUDA only, with a grad scaler)")
    compile: bool = spec(False, help="torch.compile the training step's forward and loss (complete-data batches)")


@dataclass
class IGNNConParams(GNNConParams):
    graph: Literal["probabilistic", "iterative", "none"] = spec(
        "iterative", help="label graph: probabilistic (P-GNN), iterative (I-GNN), none (linear classifiers)")


@dataclass
class DAGNNParams(GNNConParams):
    alpha: float = spec(1.0, help="weight of the classification loss L_cla", low=0.0)
    beta: float = spec(0.2, help="weight of the adversarial loss L_gan", low=0.0)
    con_weight: float = spec(0.0, help="weight of the contrastive loss L_con (0 = off)", low=0.0)
    nll_weight: float = spec(0.2, help="weight of DSCMR's pairwise NLL loss", low=0.0)


ABLATIONS = {
    "no_gan": Variant({"gan": False}, "no decoders / discriminators: L_gan dropped"),
    "no_gnn": Variant({"graph": "none"}, "independent linear (cosine) classifiers instead of the label GNN"),
    "binary_con": Variant({"positives": "binary"}, "binary positives (share a label) instead of soft ones"),
    "no_con": Variant({"con_weight": 0.0}, "no contrastive term"),
    "no_layer_agg": Variant({"layer_agg": False}, "classifiers from the last GNN layer only"),
    "no_recon": Variant({"reconstruct": False}, "incomplete data: missing features stay zero-filled in stage 2"),
}

RELEASED = {  # METHOD.md, released hyperparameters per dataset
    "mirflickr": {"alpha": 0.5, "beta": 2.0, "batch": 100, "tau": 0.22, "lr2": 1e-7},
    "nuswide": {"alpha": 0.8, "beta": 0.2, "batch": 2048, "tau": 0.22, "lr2": 1e-8},
    "mscoco": {"alpha": 2.8, "beta": 0.2, "batch": 512, "tau": 0.20, "lr2": 1e-7},
}


class GNNConModel(nn.Module):
    """Encoders, label classifiers (GNN or plain) and the optional dual adversarial networks."""

    def __init__(self, p: GNNConParams, d_img: int, d_txt: int, h0: torch.Tensor,
                 adj: torch.Tensor | None, learn_h0: bool = False) -> None:
        super().__init__()
        self.graph, self.t, self.D, self.dims = p.graph, p.t, p.D, (d_img, d_txt)
        self.enc_img, self.enc_txt = encoder(d_img, p.D), encoder(d_txt, p.D)
        c, e = h0.shape
        if p.graph == "none":
            self.classifier = nn.Parameter(torch.randn(c, p.D) * p.D ** -0.5)
        else:
            self.gnn = LabelGNN(e, p.D, p.layers, p.conv, p.layer_agg)
            if p.graph == "probabilistic":
                if learn_h0:  # the release's fallback input (no label embeddings) is learnable
                    self.h0 = nn.Parameter(h0.clone())
                else:
                    self.register_buffer("h0", h0.clone())
                self.register_buffer("adj", adj.clone())  # Â for the GCN, the raw 0.5 A + I for the GAT
            else:
                self.h0 = nn.Parameter(h0.clone())
                self.register_buffer("a0", threshold(cosine_matrix(h0), p.t))
                self.w = nn.Parameter(torch.empty(p.k, e).uniform_(0.3, 0.6))
        self.gan = p.gan
        if p.gan:
            self.dec_img2txt = decoder(p.D, 512, d_txt, nn.LeakyReLU(0.2))
            self.dec_txt2img = decoder(p.D, 2048, d_img, nn.ReLU())
            self.disc_img, self.disc_txt = discriminator(d_img), discriminator(d_txt)

    def adjacency(self) -> torch.Tensor:
        """Â of the label graph (recomputed from the learnable parts for I-GNN)."""
        if self.graph == "iterative":
            return iterative_adjacency(self.h0, self.a0, self.w, self.t)
        return self.adj

    def classifiers(self) -> torch.Tensor:
        """Label classifiers C (c, D)."""
        if self.graph == "none":
            return self.classifier
        return self.gnn(self.h0, self.adjacency())


def _rows(module: nn.Module, x: torch.Tensor, idx: torch.Tensor, count: int, d_out: int) -> torch.Tensor:
    """module(x) on the rows `idx` (`count` of them, known on the host), zeros elsewhere (BatchNorm
    sees only those rows)."""
    if count == x.shape[0]:
        return module(x)
    out = x.new_zeros(x.shape[0], d_out)
    if count == 0:
        return out
    rows = module(x.index_select(0, idx))
    return out.index_put((idx,), rows.to(out.dtype))


@dataclass
class RowMasks:
    """Presence masks of one incomplete batch, with what the step decides on computed on the host:
    row counts and row indices. im / tm: rows whose image / text counts as present; im_real /
    tm_real: rows whose feature is a true one (for the GAN's real terms). A mask with fewer than 2
    rows is emptied (BatchNorm needs two)."""

    im: torch.Tensor
    tm: torch.Tensor
    im_real: torch.Tensor
    tm_real: torch.Tensor
    idx: dict[str, torch.Tensor]
    count: dict[str, int]

    @classmethod
    def build(cls, im: torch.Tensor, tm: torch.Tensor, im_real: torch.Tensor, tm_real: torch.Tensor,
              device: torch.device | str | None = None) -> RowMasks | None:
        """From host (CPU) bool masks; None when every row is present and real (the complete path)."""
        masks = {"im": im, "tm": tm, "im_real": im_real, "tm_real": tm_real}
        masks = {k: torch.as_tensor(m).cpu().bool() for k, m in masks.items()}
        masks = {k: m if int(m.sum()) >= 2 else torch.zeros_like(m) for k, m in masks.items()}
        if all(bool(m.all()) for m in masks.values()):
            return None
        dev = device if device is not None else im.device
        idx = {k: m.nonzero().squeeze(1).to(dev) for k, m in masks.items()}
        count = {k: int(m.sum()) for k, m in masks.items()}
        on = {k: m.to(dev) for k, m in masks.items()}
        return cls(on["im"], on["tm"], on["im_real"], on["tm_real"], idx, count)


def mixed_batches(groups: list[torch.Tensor], weights: list[float], batch: int, steps: int,
                  generator: torch.Generator) -> list[torch.Tensor]:
    """`steps` batches drawing from each non-empty group in proportion to `weights` (cycling
    through a fresh permutation of a group whenever it is used up)."""
    active = [(g, w) for g, w in zip(groups, weights) if g.numel() and w > 0]
    total = sum(w for _, w in active)
    sizes = [max(1, round(batch * w / total)) for _, w in active]
    streams = [g[torch.randperm(g.numel(), generator=generator)] for g, _ in active]
    pos = [0] * len(active)
    out = []
    for _ in range(steps):
        parts = []
        for i, ((g, _), size) in enumerate(zip(active, sizes)):
            need = size
            while need:
                if pos[i] == streams[i].numel():
                    streams[i], pos[i] = g[torch.randperm(g.numel(), generator=generator)], 0
                take = min(need, streams[i].numel() - pos[i])
                parts.append(streams[i][pos[i]:pos[i] + take])
                pos[i] += take
                need -= take
        out.append(torch.cat(parts))
    return out


class GNNCon(Method):
    """The family: subclasses register it under a name with their own defaults."""

    description = "label GNN + multi-label contrastive + dual adversarial networks (TPAMI 2023)"
    Params = GNNConParams
    variants = ABLATIONS
    presets = RELEASED
    supports_missing = True
    iterative = True

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Loss weights, temperature, learning rate and graph hyperparameters."""
        return {
            "alpha": trial.suggest_float("alpha", 0.1, 5.0, log=True),
            "beta": trial.suggest_float("beta", 0.01, 5.0, log=True),
            "tau": trial.suggest_float("tau", 0.05, 1.0, log=True),
            "gamma": trial.suggest_float("gamma", 0.0, 1.0),
            "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
            "t": trial.suggest_float("t", 0.1, 0.9),
            "layers": trial.suggest_int("layers", 1, 6),
        }

    # --- setup -------------------------------------------------------------------------------

    def _label_input(self, train: CrossModalData, seed: int) -> tuple[np.ndarray, bool]:
        """(H0, learnable): given embeddings and one-hot rows are fixed; random rows are
        U(0, 1) and learnable, as the release's fallback (I-GNN learns H0 whatever it is)."""
        mode, emb = self.params.label_input, train.label_embeddings
        if mode == "auto":
            mode = "given" if emb is not None else "random"
        if mode == "given":
            if emb is None:
                raise ConfigError(f"{self.name}.label_input: 'given' but dataset '{train.name}' has no label "
                                  "embeddings; use auto, onehot or random")
            return np.asarray(emb, dtype=np.float32), False
        if mode == "onehot":
            return np.eye(train.num_labels, dtype=np.float32), False
        rng = np.random.default_rng(seed)
        return rng.random(size=(train.num_labels, self.params.label_dim)).astype(np.float32), True

    def _adjacency(self, train: CrossModalData) -> torch.Tensor:
        if "adj" in train.extras and "nums" in train.extras:
            cooc, nums = np.asarray(train.extras["adj"]), np.asarray(train.extras["nums"])
        else:
            cooc, nums = cooccurrence(train.labels)
        if self.params.conv == "gat":  # the release's GAT masks attention with the raw graph
            return probabilistic_graph(cooc, nums, self.params.t)
        return probabilistic_adjacency(cooc, nums, self.params.t)

    def build(self, train: CrossModalData, ctx: FitContext) -> GNNConModel:
        """The untrained model for `train`'s shapes, initialised from the run seed."""
        p = self.params
        h0, learn_h0 = self._label_input(train, ctx.seed)
        adj = self._adjacency(train) if p.graph == "probabilistic" else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            model = GNNConModel(p, train.image.shape[1], train.text.shape[1], torch.as_tensor(h0), adj, learn_h0)
        self.model = model.to(ctx.device)
        self.device = ctx.device
        return self.model

    # --- losses of one batch -------------------------------------------------------------------

    def batch_losses(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, im: torch.Tensor | None = None,
                     tm: torch.Tensor | None = None, im_real: torch.Tensor | None = None,
                     tm_real: torch.Tensor | None = None, masks: RowMasks | None = None) -> dict[str, torch.Tensor]:
        """Weighted total and its parts; im / tm: rows whose image / text counts as present,
        im_real / tm_real: rows whose feature is a true (not reconstructed) one.

        Without masks (or with masks saying every row is present and real) the batch takes the
        complete path: no mask logic at all. `masks` (a `RowMasks`, built on the host once per
        epoch by `fit`) replaces the four tensors and spares the host-side counting here.
        """
        if masks is None and im is not None:
            masks = RowMasks.build(im, tm, im_real, tm_real, x.device)
        if masks is None:
            return self._complete_losses(x, t, y)
        return self._masked_losses(x, t, y, masks)

    def _complete_losses(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every row present and real: no masks, no host synchronisation; the classifier
        predictions and the contrastive terms each come from one matrix of [u; v]."""
        p, m = self.params, self.model
        n = x.shape[0]
        u, v = m.enc_img(x), m.enc_txt(t)
        uv = torch.cat([u, v])
        c = m.classifiers()
        norms = uv.norm(dim=1)
        pred = (uv @ c.T) / (norms[:, None] * c.norm(dim=1)[None, :] + 1e-6)  # cosine_prediction of u and v
        out = {"cla": (pred.view(2, n, -1) - y).norm(dim=2).sum() / n}  # L_cla(u) + L_cla(v)
        total = p.alpha * out["cla"]
        if p.con_weight > 0:
            kind = "binary" if p.positives == "binary" else p.similarity
            z = uv / norms.clamp_min(1e-12)[:, None]  # F.normalize
            out["con"] = fused_contrastive(z, label_similarity(y, y, kind), p.tau, p.gamma, p.lse_scale)
            total = total + p.con_weight * out["con"]
        if p.nll_weight > 0:
            out["nll"] = dscmr_nll(u, v, y)
            total = total + p.nll_weight * out["nll"]
        if m.gan and p.beta > 0:
            # classes are modalities (image 1, text 0), as released
            gan = (adversarial_loss(m.disc_img(x), m.disc_img(m.dec_txt2img(v)), real_class=1)
                   + adversarial_loss(m.disc_txt(t), m.disc_txt(m.dec_img2txt(u)), real_class=0))
            out["gan"] = gan
            total = total + p.beta * gan
        out["loss"] = total
        return out

    def _masked_losses(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, mk: RowMasks
                       ) -> dict[str, torch.Tensor]:
        """Some rows absent or reconstructed: every term skips what it must; what is decided
        (which terms run, which rows a module sees) comes from the host-side counts in `mk`."""
        p, m = self.params, self.model
        im, tm, n = mk.im, mk.tm, x.shape[0]
        u = _rows(m.enc_img, x, mk.idx["im"], mk.count["im"], p.D)
        v = _rows(m.enc_txt, t, mk.idx["tm"], mk.count["tm"], p.D)
        c = m.classifiers()
        out = {"cla": classification_loss(cosine_prediction(u, c), y, im)
               + classification_loss(cosine_prediction(v, c), y, tm)}
        total = p.alpha * out["cla"]
        full_i, full_t = mk.count["im"] == n, mk.count["tm"] == n
        if p.con_weight > 0:
            kind = "binary" if p.positives == "binary" else p.similarity
            out["con"] = multilabel_contrastive(u, v, y, p.tau, p.gamma, kind, p.lse_scale,
                                                None if full_i and full_t else im, None if full_i and full_t else tm)
            total = total + p.con_weight * out["con"]
        if p.nll_weight > 0:
            out["nll"] = dscmr_nll(u, v, y, im, tm)
            total = total + p.nll_weight * out["nll"]
        if m.gan and p.beta > 0:
            gan = u.new_zeros(())

            def pick(z: torch.Tensor, key: str) -> torch.Tensor:
                return z if mk.count[key] == n else z.index_select(0, mk.idx[key])

            if mk.count["im_real"] and mk.count["tm"]:
                gan = gan + adversarial_loss(m.disc_img(pick(x, "im_real")), m.disc_img(m.dec_txt2img(pick(v, "tm"))),
                                             real_class=1)
            if mk.count["tm_real"] and mk.count["im"]:  # classes are modalities (image 1, text 0), as released
                gan = gan + adversarial_loss(m.disc_txt(pick(t, "tm_real")), m.disc_txt(m.dec_img2txt(pick(u, "im"))),
                                             real_class=0)
            out["gan"] = gan
            total = total + p.beta * gan
        out["loss"] = total
        return out

    # --- training ----------------------------------------------------------------------------

    def presence(self, im: torch.Tensor, tm: torch.Tensor, stage: int = 1) -> tuple[torch.Tensor, ...]:
        """(im_present, tm_present, im_real, tm_real) of one batch from its true presence masks.

        Stage 2 with reconstruction fills each missing feature from the present modality;
        `absent_rows` decides whether rows without a (true or filled) feature count as present,
        `recon_as_real` whether filled rows count as real for the discriminators.
        """
        p = self.params
        recon = stage == 2 and p.reconstruct and self.model.gan
        fill_i = (~im & tm) if recon else torch.zeros_like(im)
        fill_t = (im & ~tm) if recon else torch.zeros_like(tm)
        if p.absent_rows == "zero_filled":
            pres_i, pres_t = torch.ones_like(im), torch.ones_like(tm)
        else:
            pres_i, pres_t = im | fill_i, tm | fill_t
        if p.recon_as_real:
            return pres_i, pres_t, pres_i, pres_t
        return pres_i, pres_t, pres_i & ~fill_i, pres_t & ~fill_t

    def batch_inputs(self, x: torch.Tensor, t: torch.Tensor, im: torch.Tensor, tm: torch.Tensor, stage: int = 1,
                     prefilled: bool = False) -> tuple[torch.Tensor, ...]:
        """(x, t, im_present, tm_present, im_real, tm_real) for `batch_losses` from one batch's
        zero-filled features and true presence masks im / tm (see `presence`). Stage 2 with
        reconstruction fills the missing features per batch in train mode here, unless
        `prefilled` says the caller filled x, t already."""
        if stage == 2 and self.params.reconstruct and self.model.gan and not prefilled:
            x, t = self._reconstruct(x, t, im, tm, train_mode=True)
        return (x, t, *self.presence(im, tm, stage))

    def check_device(self, device: torch.device) -> None:
        """fp16 autocast (with its grad scaler) is CUDA-only: refuse it elsewhere, before any run."""
        if self.params.precision == "fp16" and device.type != "cuda":
            raise ConfigError(f"{self.name}.precision: fp16 needs a CUDA device (running on {device.type}); "
                              "use bf16 or fp32")

    def _precision(self, device: torch.device) -> tuple[torch.dtype | None, Any]:
        """(autocast dtype or None, grad scaler or None) for `precision` on `device`."""
        prec = self.params.precision
        if prec == "fp32":
            return None, None
        if prec == "fp16":
            self.check_device(device)
            return torch.float16, torch.amp.GradScaler("cuda")
        return torch.bfloat16, None

    def _loss_fn(self, device: torch.device):
        """The complete-path loss function, compiled when `compile` is on."""
        if not self.params.compile:
            return self._complete_losses
        compiled = torch.compile(self._complete_losses, dynamic=False)

        def run(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            try:
                return compiled(x, t, y)
            except torch._dynamo.exc.BackendCompilerFailed as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ConfigError(f"{self.name}.compile: torch.compile failed on {device.type} ({first}); "
                                  "set compile: false") from None

        return run

    def train_step(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
                   masks: RowMasks | None = None, recon_rows: tuple[list, list] | None = None,
                   amp_dtype: torch.dtype | None = None, scaler: Any = None, loss_fn: Any = None
                   ) -> dict[str, torch.Tensor]:
        """One optimisation step on one batch: losses (under autocast to `amp_dtype` when given),
        backward (through `scaler` when given), optimizer step. `masks` None: the complete path,
        which never synchronises with the device; `recon_rows` (device row indices, see
        `_fill_rows`): fill missing features
        first (stage 2, per batch). `loss_fn`: the complete-path loss (compiled or not)."""
        loss_fn = loss_fn or self._complete_losses
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            if recon_rows is not None:
                x, t = self._fill_rows(x, t, *recon_rows, train_mode=True)
            parts = loss_fn(x, t, y) if masks is None else self._masked_losses(x, t, y, masks)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            parts["loss"].backward()
            opt.step()
        else:
            scaler.scale(parts["loss"]).backward()
            scaler.step(opt)
            scaler.update()
        return parts

    def optimizer(self) -> torch.optim.Optimizer:
        """Stage-1 Adam (fused kernels on CPU / CUDA: same update, one kernel per step)."""
        p = self.params
        dev = next(self.model.parameters()).device
        fused = {"fused": True} if dev.type in ("cpu", "cuda") else {}
        return torch.optim.Adam(self.model.parameters(), lr=p.lr, betas=(p.adam_beta1, p.adam_beta2), **fused)

    def fit(self, train: CrossModalData, val: CrossModalData, ctx: FitContext) -> None:
        p, dev = self.params, ctx.device
        model = self.build(train, ctx)
        amp_dtype, scaler = self._precision(torch.device(dev))
        complete_losses = self._loss_fn(torch.device(dev))
        x = torch.as_tensor(train.image, device=dev)
        t = torch.as_tensor(train.text, device=dev)
        y = torch.as_tensor(train.labels, device=dev).float()
        n = train.n
        full = torch.ones(n, dtype=torch.bool)
        # presence masks stay on the host: every decision about a batch is made there, once per epoch
        im = full if train.image_present is None else torch.as_tensor(train.image_present).cpu().bool()
        tm = full if train.text_present is None else torch.as_tensor(train.text_present).cpu().bool()
        if not train.is_complete:  # absent rows are zero-filled whatever the data held there
            x = x.masked_fill(~im.to(dev)[:, None], 0.0)
            t = t.masked_fill(~tm.to(dev)[:, None], 0.0)
        gen = ctx.generator()

        def plan(batches: list[torch.Tensor], stage: int, prefilled: bool) -> list[tuple]:
            """Per batch, on the host, before the epoch's first step: (device rows, device rows to
            reconstruct or None, RowMasks or None). Row indices travel to the device in one copy."""
            batches = [idx for idx in batches if idx.numel() >= 2]
            if not batches:
                return []
            on_dev = torch.cat(batches).to(dev).split([idx.numel() for idx in batches])
            if train.is_complete:
                return [(rows, None, None) for rows in on_dev]
            recon = stage == 2 and p.reconstruct and model.gan and not prefilled
            out = []
            for idx, rows in zip(batches, on_dev):
                bi, bt = im[idx], tm[idx]
                masks = RowMasks.build(*self.presence(bi, bt, stage), device=x.device)
                out.append((rows, self._fill_plan(bi, bt, x.device) if recon else None, masks))
            return out

        def run(batches: list[torch.Tensor], opt: torch.optim.Optimizer, xs: torch.Tensor, ts: torch.Tensor,
                stage: int, prefilled: bool = False) -> dict[str, float]:
            sums: dict[str, torch.Tensor] = {}
            for rows, recon_rows, masks in plan([b.cpu() for b in batches], stage, prefilled):
                parts = self.train_step(xs[rows], ts[rows], y[rows], opt, masks, recon_rows, amp_dtype, scaler,
                                        complete_losses)
                for key, val_ in parts.items():
                    sums[key] = sums.get(key, 0.0) + val_.detach().float()
            return {k: float(v) / max(1, len(batches)) for k, v in sums.items()}

        opt = self.optimizer()

        def stage1(epoch: int) -> dict[str, float]:
            perm = torch.randperm(n, generator=gen)
            return run(list(perm.split(p.batch)), opt, x, t, stage=1)

        validate = lambda: validation_map(self, val, device=dev)
        first = run_epochs(ctx, model, stage1, validate, p.epochs, p.patience)
        if not (train.is_complete or p.stage2_epochs == 0 or p.epochs == 0):
            self._stage2(ctx, first.best_val_map, first.epochs_run, x, t, im, tm, run, validate, gen)
        if model.graph != "none" and train.labels.shape[1] <= 500:  # the report draws it as a heatmap
            with torch.no_grad():
                adj = model.adjacency().detach().float().cpu().numpy()
            ctx.artifact("label_adjacency", adj, axis_labels=[str(n) for n in train.label_names])

    def _stage2(self, ctx, best_first, offset, x, t, im, tm, run, validate, gen) -> None:
        """Incomplete-modal stage 2: reconstruct missing features, mixed 1:2:2 batches, SGD lr2.
        im, tm: host (CPU) presence masks."""
        p, model = self.params, self.model
        kept = {k: v.detach().clone() for k, v in model.state_dict().items()}
        per_epoch = p.reconstruct and model.gan and p.stage2_recon == "per_epoch"
        groups = [(im & tm).nonzero().squeeze(1), (im & ~tm).nonzero().squeeze(1), (~im & tm).nonzero().squeeze(1)]
        steps = math.ceil(x.shape[0] / p.batch)
        opt = torch.optim.SGD(model.parameters(), lr=p.lr2)

        def stage2(epoch: int) -> dict[str, float]:
            xs, ts = x, t
            if per_epoch:
                xs, ts = self._reconstruct(x, t, im, tm)
            model.train()
            batches = mixed_batches(groups, [1.0, 2.0, 2.0], p.batch, steps, gen)
            return run(batches, opt, xs, ts, stage=2, prefilled=per_epoch)

        second = run_epochs(ctx, model, stage2, validate, p.stage2_epochs, p.patience, first_epoch=offset + 1)
        if not second.best_val_map > best_first:
            model.load_state_dict(kept)
        model.eval()

    @staticmethod
    def _fill_plan(im: torch.Tensor, tm: torch.Tensor, device: torch.device | str) -> tuple[list, list]:
        """Device row indices (in chunks) of the image-only and the text-only rows, from host masks."""
        im, tm = im.cpu(), tm.cpu()
        return tuple([c.to(device) for c in rows.nonzero().squeeze(1).split(ENCODE_BATCH)]
                     for rows in (im & ~tm, ~im & tm))

    @torch.no_grad()
    def _fill_rows(self, x: torch.Tensor, t: torch.Tensor, image_only: list, text_only: list,
                   train_mode: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of x, t: text of the `image_only` rows = dec_img2txt(enc_img(x)), image of the
        `text_only` rows = dec_txt2img(enc_txt(t)) (lists of device index chunks); see `_reconstruct`."""
        m = self.model
        was_training = m.training
        x, t = x.clone(), t.clone()
        jobs = ((t, x, image_only, m.enc_img, m.dec_img2txt), (x, t, text_only, m.enc_txt, m.dec_txt2img))
        for target, source, chunks, enc, dec in jobs:
            for chunk in chunks:
                mode = train_mode and chunk.numel() >= 2
                enc.train(mode)
                dec.train(mode)
                target.index_copy_(0, chunk, dec(enc(source.index_select(0, chunk))).to(target.dtype))
        m.train(was_training)
        return x, t

    def _reconstruct(self, x: torch.Tensor, t: torch.Tensor, im: torch.Tensor, tm: torch.Tensor,
                     train_mode: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of x, t whose missing rows hold decoder(encoder(present modality)), without gradient.

        im, tm: presence masks (host tensors in training, so choosing the rows needs no device
        synchronisation). train_mode=False: eval mode (BatchNorm running statistics).
        train_mode=True (the release's per-batch filling): each group of rows (image-only, then
        text-only) goes through the encoder and decoder as one batch in train mode, so BatchNorm
        uses that group's statistics and updates its running ones; a group of one row falls back
        to eval mode (BatchNorm cannot train on a single row). The model's mode is restored afterwards.
        """
        return self._fill_rows(x, t, *self._fill_plan(im, tm, x.device), train_mode=train_mode)

    @torch.no_grad()
    def encode(self, image: np.ndarray | None = None, text: np.ndarray | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Common-space features (eval mode, batched), float32 numpy."""
        if getattr(self, "model", None) is None:
            raise RuntimeError(f"{self.name}: call fit() before encode()")
        self.model.eval()

        return (encode_in_batches(self.model.enc_img, image, self.device, self.params.D),
                encode_in_batches(self.model.enc_txt, text, self.device, self.params.D))


@register_method
class PGNNCon(GNNCon):
    name = "pgnn_con"
    description = "P-GNN (co-occurrence label graph) + soft multi-label contrastive + dual GANs (TPAMI 2023)"


@register_method
class IGNNCon(GNNCon):
    name = "ignn_con"
    description = "I-GNN (learnable iterative label graph) + soft multi-label contrastive + dual GANs (TPAMI 2023)"
    Params = IGNNConParams


@register_method
class DAGNN(GNNCon):
    name = "dagnn"
    description = "DAGNN (AAAI 2021): label GCN classifiers + pairwise NLL + dual GANs, no contrastive term"
    Params = DAGNNParams
    variants: dict[str, Variant] = {}
    # Batch sizes as the TPAMI release per dataset (an assumption: DAGNN's own values are not in METHOD.md).
    presets = {name: {"batch": pre["batch"]} for name, pre in RELEASED.items()}

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Loss weights, learning rate and graph hyperparameters (no contrastive term to tune)."""
        return {
            "alpha": trial.suggest_float("alpha", 0.1, 5.0, log=True),
            "beta": trial.suggest_float("beta", 0.01, 5.0, log=True),
            "nll_weight": trial.suggest_float("nll_weight", 0.01, 2.0, log=True),
            "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
            "t": trial.suggest_float("t", 0.1, 0.9),
            "layers": trial.suggest_int("layers", 1, 6),
        }
