"""The TPAMI 2023 model (multi-label contrastive learning with dual adversarial graph neural
networks), its ablations, and its AAAI 2021 predecessor DAGNN.

Papers: S. Qian, D. Xue, Q. Fang, C. Xu, "Integrating Multi-Label Contrastive Learning With Dual
Adversarial Graph Neural Networks for Cross-Modal Retrieval", IEEE TPAMI 45(4), 2023 (DOI
10.1109/TPAMI.2022.3188547); S. Qian, D. Xue et al., "Dual Adversarial Graph Neural Networks for
Multi-label Cross-modal Retrieval", AAAI 2021 (DAGNN). Written from the paper and the facts of
the authors' PyTorch release (LivXue/GNN4CMR on GitHub), not from its code.

Model (x_i image and t_i text feature of item i, y_i its multi-hot labels over c labels, D the
common-space dimension; in the classifiers cos(a, b) = a.b / (|a| |b| + 1e-6), as released):
    u_i = ReLU(W_u BN(x_i) + b_u),  v_i = ReLU(W_v BN(t_i) + b_v)        encoders into the common space
    H_{l+1} = LeakyReLU_0.2(Â H_l W_l),  l = 0 .. L-1                    label GNN, no bias
    C = Linear([H_1, ..., H_L])   (c x D)                                 layer aggregation (else C = H_L)
    p_ik = cos(u_i, C_k),  q_ik = cos(v_i, C_k)                           inter-dependent label classifiers
  H_0: the dataset's label embeddings (GloVe vectors in the paper); without them a learnable
  U(0, 1) matrix, as released (`label_input`).
  P-GNN (`pgnn_con`), a fixed graph from the training labels (cooc_ij = items labelled i and j,
  n_j = items labelled j, `t` the edge threshold):  A_ij = [cooc_ij / n_j >= `t`] (i != j),
  M = 0.5 A + I, Â = D^-1/2 M' D^-1/2 with D the row sums of M. The ratio divides by the COLUMN
  label's count, as released (ML-GCN divides by the row label's).
  I-GNN (`ignn_con`), a graph learnt with H_0 (learnable here whatever its source):
  A0 = thr(cos(H0_init, H0_init)),  S = thr(mean_k cos(H_0 * w_k, H_0 * w_k)) over k learnable
  vectors w_k ~ U(0.3, 0.6),  Â = norm(0.5 A0 + 0.5 S), recomputed every forward pass; thr sets
  entries below `t` to 0, and the release thresholds the mean, not each of the k graphs.
  GAT option (`conv: gat`): single-head attention layers, each followed by ELU; P-GNN masks the
  attention with the un-normalised 0.5 A + I, I-GNN with its Â (as released).
  Dual adversarial networks: decoders G_it = BN -> Linear(D, 512) -> LeakyReLU_0.2 ->
  Linear(512, d_t) -> LeakyReLU_0.2 and G_ti = BN -> Linear(D, 2048) -> ReLU -> Linear(2048, d_x)
  -> ReLU map u (v) into the text (image) INPUT space; discriminators D_x, D_t, one per input
  space: gradient reversal -> BN -> d -> d/4 -> d/16 -> 2 (ReLU between).

Loss of a batch of n items (`common.losses`):
    L = alpha L_cla + con_weight L_con + nll_weight L_nll + beta L_gan
    L_cla = mean_i |p_i - y_i|_2 + mean_i |q_i - y_i|_2
    L_con = l(u, v) + l(v, u) + gamma (l(u, u) + l(v, v)),
        l(a, b) = -mean_i sum_j P_ij (z_ij - log sum_j' exp(lse_scale z_ij')),  z_ij = â_i . b̂_j / tau
        on L2-normalised rows,
        P_ij = s_ij / sum_j s_ij with s the label similarity: Jaccard |y_i AND y_j| / |y_i OR y_j| (soft
        positives; cosine as an option), or [y_i . y_j > 0] (`positives: binary`). The intra-modal
        terms drop j = i from the positives (P_ii = 0) but keep it in the log-sum-exp; a row
        without positives adds 0. lse_scale = 1.06 as released (1 is the textbook softmax).
    L_nll = sum over (u, u), (u, v), (v, v) of mean_ij [log(1 + e^theta_ij) - S_ij theta_ij],
        theta_ij = a_i . b_j / max(|a_i| |b_j|, 1e-6) / 2, S_ij = y_i . y_j (the number of shared
        labels, as DSCMR's release counts them), i = j included                               (DAGNN)
    L_gan = CE(D_x(x_i), image) + CE(D_x(G_ti(v_i)), text) + CE(D_t(t_i), text) + CE(D_t(G_it(u_i)), image),
        each term a mean over the batch; the discriminators' classes are the modalities (image 1,
        text 0), as released.
  One Adam step (lr 5e-5, betas (0.5, 0.999)) on L trains every part: behind the gradient
  reversal the discriminators minimise L_gan while encoders and decoders maximise it, which
  strips modality-specific information from u and v.
  `dagnn`: alpha 1, con_weight 0, nll_weight 0.2, beta 0.2.
  Variants (ablations): no_gan (no decoders / discriminators), no_gnn (free linear classifiers
  C), binary_con, no_con, no_layer_agg, no_recon (see `ABLATIONS`).

Incomplete-modal training (two stages; `common/incomplete.py` holds the machinery): stage 1 as
above on zero-filled missing features (`absent_rows: zero_filled`, the release) or with each term
skipping absent rows (`masked`); stage 2 (SGD at lr2, 40 epochs as released) on batches of
paired : image-only : text-only rows 1 : 2 : 2 whose missing features are filled with
decoder(encoder(present modality)), per batch in train mode as released (`stage2_recon:
per_batch`) or once per epoch in eval mode (`per_epoch`), counted as real by the discriminators
or not (`recon_as_real`). Complete training data skips stage 2.

Deviations from the release:
  - the best epoch is chosen on a validation split carved from the training data (the release
    keeps the epoch with the best test mAP); if no stage-2 epoch beats stage 1, the stage-1
    weights are kept;
  - stage 2 applies its loss weights in the intended order (the release's main.py passes them
    shuffled);
  - soft (Jaccard) positives by default, as the paper describes; the release computes binary
    ones (`positives: binary`, the `binary_con` variant);
  - options that are ours, all off by default: `absent_rows: masked`, `stage2_recon: per_epoch`,
    `recon_as_real: false`, `precision: bf16 / fp16` (autocast), `compile` (torch.compile of the
    complete-data loss), `patience` (early stopping).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from bench import hardware
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
from .common.incomplete import RowMasks, fill_rows, masked_losses, plan_batches, presence, run_stage2
from .common.layers import LabelGNN, decoder, discriminator, encoder
from .common.losses import adversarial_loss, dscmr_nll, fused_contrastive, label_similarity
from .common.training import EpochMeans, encode_pair, require_fitted, seeded, shuffled_batches, train_tensors


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

RELEASED = {  # the hyperparameters the authors released per dataset
    "mirflickr": {"alpha": 0.5, "beta": 2.0, "batch": 100, "tau": 0.22, "lr2": 1e-7},
    "nuswide": {"alpha": 0.8, "beta": 0.2, "batch": 2048, "tau": 0.22, "lr2": 1e-8},
    "mscoco": {"alpha": 2.8, "beta": 0.2, "batch": 512, "tau": 0.20, "lr2": 1e-7},
}


class GNNConModel(nn.Module):
    """Encoders, label classifiers (GNN or plain) and the optional dual adversarial networks."""

    def __init__(self, p: GNNConParams, d_img: int, d_txt: int, h0: torch.Tensor,
                 adj: torch.Tensor | None, learn_h0: bool = False) -> None:
        super().__init__()
        self.graph, self.edge_threshold, self.D, self.dims = p.graph, p.t, p.D, (d_img, d_txt)
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
            return iterative_adjacency(self.h0, self.a0, self.w, self.edge_threshold)
        return self.adj

    def classifiers(self) -> torch.Tensor:
        """Label classifiers C (c, D)."""
        if self.graph == "none":
            return self.classifier
        return self.gnn(self.h0, self.adjacency())



class GNNCon(Method):
    """The family: subclasses register it under a name with their own defaults."""

    description = "label GNN + multi-label contrastive + dual adversarial networks (TPAMI 2023)"
    Params = GNNConParams
    variants = ABLATIONS
    presets = RELEASED
    supports_missing = True
    test_params = {"D": 32, "layers": 2, "k": 3, "label_dim": 8, "epochs": 3, "batch": 50, "lr": 1e-2,
                   "stage2_epochs": 1, "lr2": 1e-3}

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

    # --- the model ---------------------------------------------------------------------------

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
        """P-GNN's fixed graph from the training labels (or the counts a dataset ships)."""
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
        with seeded(ctx.seed):
            model = GNNConModel(p, train.image.shape[1], train.text.shape[1], torch.as_tensor(h0), adj, learn_h0)
        self.model = model.to(ctx.device)
        self.device = ctx.device
        return self.model

    # --- losses of one batch -------------------------------------------------------------------

    def batch_losses(self, img: torch.Tensor, txt: torch.Tensor, y: torch.Tensor, im: torch.Tensor | None = None,
                     tm: torch.Tensor | None = None, im_real: torch.Tensor | None = None,
                     tm_real: torch.Tensor | None = None, masks: RowMasks | None = None) -> dict[str, torch.Tensor]:
        """Weighted total and its parts; im / tm: rows whose image / text counts as present,
        im_real / tm_real: rows whose feature is a true (not reconstructed) one.

        Without masks (or with masks saying every row is present and real) the batch takes the
        complete path. `masks` (a `RowMasks`, built on the host once per epoch by `fit`) replaces
        the four tensors and spares the host-side counting here.
        """
        if masks is None and im is not None:
            masks = RowMasks.build(im, tm, im_real, tm_real, img.device)
        if masks is None:
            return self._complete_losses(img, txt, y)
        return masked_losses(self.model, self.params, img, txt, y, masks)

    def _complete_losses(self, img: torch.Tensor, txt: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every row present and real: no masks, no host read of a device value; the classifier
        predictions and the contrastive terms each come from one matrix of [u; v]."""
        p, m = self.params, self.model
        n = img.shape[0]
        u, v = m.enc_img(img), m.enc_txt(txt)
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
            gan = (adversarial_loss(m.disc_img(img), m.disc_img(m.dec_txt2img(v)), real_class=1)
                   + adversarial_loss(m.disc_txt(txt), m.disc_txt(m.dec_img2txt(u)), real_class=0))
            out["gan"] = gan
            total = total + p.beta * gan
        out["loss"] = total
        return out

    # --- training ----------------------------------------------------------------------------

    def fills(self, stage: int) -> bool:
        """Whether a batch of `stage` gets its missing features reconstructed (stage 2, with decoders)."""
        return stage == 2 and self.params.reconstruct and self.model.gan

    def presence(self, im: torch.Tensor, tm: torch.Tensor, stage: int = 1) -> tuple[torch.Tensor, ...]:
        """(im_present, tm_present, im_real, tm_real) of one batch of `stage` from its true presence
        masks, per `absent_rows` and `recon_as_real` (`common.incomplete.presence`)."""
        p = self.params
        return presence(im, tm, self.fills(stage), p.absent_rows, p.recon_as_real)

    def check_device(self, device: torch.device) -> None:
        """Refuse, before any run, a precision the device cannot run well: fp16 autocast (with its
        grad scaler) needs CUDA; bf16 on a CPU without native bf16 arithmetic is emulated."""
        prec = self.params.precision
        if prec == "fp16" and device.type != "cuda":
            raise ConfigError(f"{self.name}.precision: fp16 needs a CUDA device (running on {device.type}); "
                              "use bf16 or fp32")
        if prec == "bf16" and device.type == "cpu" and hardware.native_bf16() is False:
            raise ConfigError(f"{self.name}.precision: bf16 on this CPU is {hardware.EMULATED_BF16}; "
                              "use precision: fp32")

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

        def run(img: torch.Tensor, txt: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            try:
                return compiled(img, txt, y)
            except torch._dynamo.exc.BackendCompilerFailed as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ConfigError(f"{self.name}.compile: torch.compile failed on {device.type} ({first}); "
                                  "set compile: false") from None

        return run

    def train_step(self, img: torch.Tensor, txt: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
                   masks: RowMasks | None = None, fill: tuple[list, list] | None = None,
                   amp_dtype: torch.dtype | None = None, scaler: Any = None, loss_fn: Any = None
                   ) -> dict[str, torch.Tensor]:
        """One optimisation step on one batch: losses (under autocast to `amp_dtype` when given),
        backward (through `scaler` when given), optimizer step. `masks` None: the complete path,
        which never reads a device value on the host; `fill` (device row chunks, see
        `common.incomplete.fill_plan`): reconstruct those missing features first, in train mode
        (stage 2, per batch). `loss_fn`: the complete-path loss (compiled or not)."""
        loss_fn = loss_fn or self._complete_losses
        with torch.autocast(img.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            if fill is not None:
                img, txt = fill_rows(self.model, img, txt, *fill, train_mode=True)
            parts = loss_fn(img, txt, y) if masks is None else masked_losses(self.model, self.params, img, txt, y,
                                                                             masks)
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
        # presence masks stay on the host: every decision about a batch is made there, once per epoch
        data = train_tensors(train, dev, masks_device="cpu")
        img, txt, y = data.image, data.text, data.labels
        everyone = torch.ones(train.n, dtype=torch.bool)
        im = everyone if data.image_present is None else data.image_present
        tm = everyone if data.text_present is None else data.text_present
        if not train.is_complete:  # absent rows are zero-filled whatever the data held there
            img = img.masked_fill(~im.to(dev)[:, None], 0.0)
            txt = txt.masked_fill(~tm.to(dev)[:, None], 0.0)
        gen = ctx.generator()

        def train_batches(batches: list[torch.Tensor], opt: torch.optim.Optimizer, imgs: torch.Tensor,
                          txts: torch.Tensor, stage: int, prefilled: bool = False) -> dict[str, float]:
            """One epoch's steps on `batches` (host row indices of imgs / txts): its loss means."""
            presence_of = None if train.is_complete else (lambda bi, bt: self.presence(bi, bt, stage))
            planned = plan_batches([b.cpu() for b in batches], img.device, im, tm, presence_of,
                                   fill=self.fills(stage) and not prefilled)
            means = EpochMeans()
            for b in planned:
                means.add(self.train_step(imgs[b.rows], txts[b.rows], y[b.rows], opt, b.masks, b.fill, amp_dtype,
                                          scaler, complete_losses))
            return means.means(len(batches))

        opt = self.optimizer()

        def stage1(epoch: int) -> dict[str, float]:
            return train_batches(shuffled_batches(train.n, p.batch, gen), opt, img, txt, stage=1)

        def validate() -> float:
            return validation_map(self, val, device=dev)

        first = run_epochs(ctx, model, stage1, validate, p.epochs, p.patience)
        if not (train.is_complete or p.stage2_epochs == 0 or p.epochs == 0):
            run_stage2(ctx, model, p, img, txt, im, tm, train_batches, validate, gen, first.best_val_map,
                       first.epochs_run)
        if model.graph != "none" and train.labels.shape[1] <= 500:  # the report draws it as a heatmap
            with torch.no_grad():
                adj = model.adjacency().detach().float().cpu().numpy()
            ctx.artifact("label_adjacency", adj, axis_labels=[str(n) for n in train.label_names])

    def encode(self, image: np.ndarray | None = None, text: np.ndarray | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Common-space features u (images) and v (texts) (eval mode, batched), float32."""
        require_fitted(self)
        return encode_pair(self.model, self.model.enc_img, self.model.enc_txt, image, text, self.device,
                           self.params.D)


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
    # The TPAMI release's batch size per dataset (an assumption: DAGNN's own values were not released).
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
