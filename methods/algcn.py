"""ALGCN (S. Qian, D. Xue, Q. Fang, C. Xu, "Adaptive Label-Aware Graph Convolutional Networks for
Cross-Modal Retrieval", IEEE Transactions on Multimedia, 2021).

Written from the paper and the facts of the authors' PyTorch release (LivXue/ALGCN on GitHub), not
from its code.

Model:
    f = ReLU(W_img x + b),  g = ReLU(W_txt t + b')                  instance branch (retrieval features)
    A_ij = 0.5 [c_ij / n_j >= t] (i != j), A_ii = 1.5               training-label co-occurrence graph
    M = ReLU(A + gamma B),  Â = D^-1/2 M^T D^-1/2, D = row sums of M   B learnable (c x c)
    H_{l+1} = LeakyReLU_0.2(Â H_l W_l), l = 1..3 (bias-free GCN), w = Linear([H_1, H_2, H_3])
    yhat_ik = f_i . w_k / (|f_i| |w_k| + 1e-6)                       label-aware classifiers
  H_0 (c x 300): a learnable matrix initialised U(0, 1) (release default), or the dataset's
  label embeddings kept frozen (`label_input: given`). B starts at 0.02 U(0, 1), is not
  symmetrised, and learns with 100x the base learning rate.
Loss (`common.baseline_losses.algcn_loss`):
    L = L_cla + 0.2 L_nll + 0.5 L_ss
    L_cla = mean_i ||yhat_i^img - y_i||_2 + mean_i ||yhat_i^txt - y_i||_2
    L_nll = DSCMR's J2 on (f, g): count-valued S_ij = y_i . y_j, i = j kept
    L_ss  = sum over the 3 layers of mean_ij (Â_ij - T_ij)^2, T = min(A + Bernoulli(0.2), 0.5),
            a fresh draw per layer and per step
Optimiser: Adam lr 5e-5 (B: 5e-3), betas (0.5, 0.999), no weight decay, shuffled batches.
Released per-dataset settings (presets): MIRFlickr 30 epochs batch 100; NUS-WIDE 40 / 1024;
MS-COCO 50 / 1024 (t = 0.4, gamma = 0.5 everywhere).

Incomplete-modal data (`supports_missing`): ALGCN learns from unpaired rows: L_cla per modality
over its present rows, L_nll over pairs whose two modalities are present; L_ss does not involve
items. On complete data this is the release's loss exactly.

Follows / departs from the release:
  - same layers, initialisations, loss, constants and optimiser groups;
  - the graph counts come from this run's training rows (the release reads a precomputed
    adj.mat of its training split); labels that never occur keep A_ii = 1.5 (the release's
    0/0 would give NaN there);
  - the release keeps the epoch with the best TEST mAP; here the epoch is chosen on the
    validation split; the release's fixed seed 103 is replaced by the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from bench.data import CrossModalData
from bench.errors import ConfigError
from bench.method import FitContext, Method, run_epochs, validation_map
from bench.params import spec
from bench.registry import register_method

from .common.baseline_losses import algcn_loss, eps_cosine_prediction
from .common.graphs import cooccurrence, normalize_adjacency
from .common.layers import LabelGNN
from .common.training import EpochMeans, encode_pair, require_fitted, seeded, shuffled_batches, train_tensors


@dataclass
class ALGCNParams:
    epochs: int = spec(30, help="training epochs (release: MIRFlickr 30, NUS-WIDE 40, MS-COCO 50)", low=0)
    batch: int = spec(100, help="minibatch size (release: MIRFlickr 100, NUS-WIDE and MS-COCO 1024)", low=1)
    lr: float = spec(5e-5, help="Adam learning rate", low=0.0)
    b_lr_factor: float = spec(100.0, help="learning rate of the graph residual B, relative to lr", low=0.0)
    adam_beta1: float = spec(0.5, help="Adam beta1", low=0.0, high=1.0)
    adam_beta2: float = spec(0.999, help="Adam beta2", low=0.0, high=1.0)
    dim: int = spec(1024, help="common-space dimension (also the GCN width)", low=1)
    layers: int = spec(3, help="GCN layers (the release has 3)", low=1)
    label_input: Literal["learnable", "given"] = spec(
        "learnable", help="GCN input H0: learnable U(0,1) matrix (release default) or the dataset's frozen "
                          "label embeddings")
    label_dim: int = spec(300, help="columns of the learnable H0", low=1)
    t: float = spec(0.4, help="co-occurrence threshold of the label graph", low=0.0, high=1.0)
    gamma: float = spec(0.5, help="weight of the learnable residual B in M = ReLU(A + gamma B)", low=0.0)
    nll_weight: float = spec(0.2, help="weight of the pairwise label-similarity loss L_nll", low=0.0)
    ss_weight: float = spec(0.5, help="weight of the graph self-supervision loss L_ss", low=0.0)
    neg_ratio: float = spec(0.2, help="Bernoulli rate of the noise added to L_ss's target", low=0.0, high=1.0)
    patience: int | None = spec(None, help="early stopping after this many epochs without improvement")


RELEASED = {  # LivXue/ALGCN main.py, per dataset
    "mirflickr": {"epochs": 30, "batch": 100},
    "nuswide": {"epochs": 40, "batch": 1024},
    "mscoco": {"epochs": 50, "batch": 1024},
}


def algcn_adjacency(cooc: np.ndarray, nums: np.ndarray, t: float) -> torch.Tensor:
    """A (c x c): A_ij = 0.5 [cooc_ij / nums_j >= t] off the diagonal (the COLUMN label's count),
    A_ii = 1.5 (the release's own-count ratio is 2 >= t, so 0.5 + the identity)."""
    cooc = np.asarray(cooc, dtype=np.float64)
    ratio = cooc / np.maximum(np.asarray(nums, dtype=np.float64)[None, :], 1e-12)
    a = 0.5 * (ratio >= t)
    np.fill_diagonal(a, 1.5)
    return torch.as_tensor(a, dtype=torch.float32)


def learnable_adjacency(a: torch.Tensor, b: torch.Tensor, gamma: float) -> torch.Tensor:
    """Â = D^-1/2 M^T D^-1/2 with M = ReLU(A + gamma B) and D the row sums of M."""
    return normalize_adjacency(torch.relu(a + gamma * b))


class ALGCNModel(nn.Module):
    """Instance branch (one ReLU layer per modality) and label branch (GCN over the adaptive graph)."""

    def __init__(self, d_img: int, d_txt: int, p: ALGCNParams, a: torch.Tensor, h0: torch.Tensor,
                 learn_h0: bool) -> None:
        super().__init__()
        c = a.shape[0]
        self.gamma = p.gamma
        self.img = nn.Sequential(nn.Linear(d_img, p.dim), nn.ReLU())
        self.txt = nn.Sequential(nn.Linear(d_txt, p.dim), nn.ReLU())
        self.gnn = LabelGNN(h0.shape[1], p.dim, p.layers, "gcn", layer_agg=True)
        self.register_buffer("a", a.clone())
        self.b = nn.Parameter(0.02 * torch.rand(c, c))
        if learn_h0:
            self.h0 = nn.Parameter(h0.clone())
        else:
            self.register_buffer("h0", h0.clone())

    def adjacency(self) -> torch.Tensor:
        return learnable_adjacency(self.a, self.b, self.gamma)


@register_method
class ALGCN(Method):
    name = "algcn"
    description = "ALGCN (TMM 2021): label GCN over an adaptive co-occurrence graph, cosine label classifiers"
    Params = ALGCNParams
    presets = RELEASED
    supports_missing = True
    test_params = {"epochs": 5, "batch": 40, "dim": 16, "label_dim": 8, "lr": 1e-2}

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Learning rate, loss weights and the graph's threshold and residual weight."""
        return {"lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
                "nll_weight": trial.suggest_float("nll_weight", 0.01, 2.0, log=True),
                "ss_weight": trial.suggest_float("ss_weight", 0.01, 2.0, log=True),
                "t": trial.suggest_float("t", 0.1, 0.9),
                "gamma": trial.suggest_float("gamma", 0.0, 1.0)}

    def build(self, train: CrossModalData, ctx: FitContext) -> ALGCNModel:
        """The untrained model for `train`'s shapes and labels, initialised from the run seed."""
        p = self.params
        a = algcn_adjacency(*cooccurrence(train.labels), p.t)
        with seeded(ctx.seed):
            if p.label_input == "given":
                if train.label_embeddings is None:
                    raise ConfigError(f"{self.name}.label_input: 'given' but dataset '{train.name}' has no label "
                                      "embeddings; use learnable")
                h0 = torch.as_tensor(np.asarray(train.label_embeddings, dtype=np.float32))
            else:
                h0 = torch.rand(train.num_labels, p.label_dim)
            model = ALGCNModel(train.image.shape[1], train.text.shape[1], p, a, h0, p.label_input == "learnable")
        self.model, self.device = model.to(ctx.device), ctx.device
        return self.model

    def fit(self, train: CrossModalData, val: CrossModalData, ctx: FitContext) -> None:
        p, dev = self.params, ctx.device
        model = self.build(train, ctx)
        data = train_tensors(train, dev)
        rest = [q for name, q in model.named_parameters() if name != "b"]
        opt = torch.optim.Adam([{"params": rest}, {"params": [model.b], "lr": p.lr * p.b_lr_factor}],
                               lr=p.lr, betas=(p.adam_beta1, p.adam_beta2))
        gen, noise_gen = ctx.generator(), ctx.generator(1)
        rate = torch.full(model.a.shape, p.neg_ratio)

        def epoch(_: int) -> dict[str, float]:
            means = EpochMeans()
            for idx in shuffled_batches(train.n, p.batch, gen, dev):
                b = data.rows(idx)
                f, g = model.img(b.image), model.txt(b.text)
                adj = model.adjacency()
                w = model.gnn(model.h0, adj)
                noises = [torch.bernoulli(rate, generator=noise_gen).to(dev) for _ in range(p.layers)]
                parts = algcn_loss(f, g, eps_cosine_prediction(f, w), eps_cosine_prediction(g, w), b.labels, adj,
                                   model.a, noises, p.nll_weight, p.ss_weight, b.image_present, b.text_present)
                opt.zero_grad(set_to_none=True)
                parts["loss"].backward()
                opt.step()
                means.add(parts)
            return means.means()

        run_epochs(ctx, model, epoch, lambda: validation_map(self, val, device=dev), p.epochs, p.patience)

    def encode(self, image: np.ndarray | None = None, text: np.ndarray | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The instance features f (images) and g (texts), float32."""
        require_fitted(self)
        return encode_pair(self.model, self.model.img, self.model.txt, image, text, self.device, self.params.dim)
