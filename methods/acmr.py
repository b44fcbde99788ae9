"""ACMR: Adversarial Cross-Modal Retrieval (Wang, Yang, Xu, Hanjalic, Shen, ACM MM 2017).

Written from the paper and the facts of the authors' TensorFlow release (cuishuhao/ACMR on GitHub,
NUS-WIDE-10k), not from its code.

Model:
    v = P_img(image): d_img -> 4096 -> 1000 -> 40,  t = P_txt(text): d_txt -> 1000 -> 300 -> 40
        (tanh after EVERY layer, so the common space is (-1, 1)^40; Xavier-uniform weights,
        zero biases)
    label classifier: one Linear(40 -> c) shared by both modalities
    modality classifier D: gradient reversal (lambda_p) -> Linear 40 -> 20 -> 10 -> 2, no
        activations between
Losses (`common.baseline_losses`):
    L_lab = mean_i CE(W v_i, y_i) + mean_i CE(W t_i, y_i)     softmax CE on single-label data;
            on multi-label data sum_k BCE over the labels of a row (`label_loss`)
    L_sim = ||V - T||_F over the batch                          (a Frobenius norm, not a mean)
    L_dis = mean over all B x B pairs of max(0, 0.1 - m_ij d_ij),
            d_ij = sum_k v_ik + sum_k t_jk - v_i . t_j, m_ij = [items i, j share no label]
    L_emb = 50 L_lab + L_sim + 0.2 L_dis
    L_adv = mean_i CE(D(v_i), image) + mean_i CE(D(t_i), text)
    lambda_p = 2 / (1 + exp(-10 p)) - 1, p = (epoch - 1) / epochs, constant within an epoch
Training: one forward pass per batch, one backward of L_emb + L_adv, then two Adam optimisers
(lr 1e-4, betas (0.5, 0.999)) step together: one over the projectors and the label classifier,
one over D. Because D's input passes through gradient reversal, the projectors receive
grad(L_emb) - lambda_p grad(L_adv), i.e. they minimise L_emb - lambda_p L_adv, while D
minimises L_adv: the paper's minimax game. Batch 64, last incomplete batch dropped, 50 epochs.

Incomplete-modal data (`supports_missing`): ACMR learns from unpaired rows: L_lab and L_adv per
modality over its present rows, L_dis over pairs (image i present, text j present), L_sim over
rows with both modalities. On complete data this is the paper's loss exactly.

Follows / departs from the release:
  - two release bugs undone (the paper's version): the projectors DO receive the reversed
    gradient (the release's embedding optimiser never sees L_adv), and the label classifier
    IS trained (the release puts it in no optimiser);
  - multi-label data: binary cross-entropy for L_lab (the release is single-label only), and
    "share no label" for m_ij (the release compares single class ids);
  - batches are reshuffled every epoch (the release shuffles once); when the training set is
    smaller than one batch, it is used as a single batch rather than dropped;
  - the release evaluates with Euclidean distance and mAP@50 at the last epoch; here the
    harness's cosine mAP and validation-split epoch selection apply.
  - `adv_weight` scales lambda_p (1 = the paper), so a search can weaken or strengthen the game.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from bench.data import CrossModalData
from bench.method import FitContext, Method, run_epochs, validation_map
from bench.params import spec
from bench.registry import register_method

from .common.baseline_losses import acmr_dissimilarity, acmr_label_loss, dann_lambda, frobenius_distance, modality_loss
from .common.layers import reverse_gradient
from .common.training import EpochMeans, encode_pair, require_fitted, seeded, shuffled_batches, train_tensors


@dataclass
class ACMRParams:
    epochs: int = spec(50, help="training epochs (release: 50)", low=0)
    batch: int = spec(64, help="minibatch size; the last incomplete batch is dropped", low=2)
    lr: float = spec(1e-4, help="Adam learning rate of the projectors and label classifier", low=0.0)
    lr_domain: float = spec(1e-4, help="Adam learning rate of the modality classifier", low=0.0)
    adam_beta1: float = spec(0.5, help="Adam beta1", low=0.0, high=1.0)
    adam_beta2: float = spec(0.999, help="Adam beta2", low=0.0, high=1.0)
    image_hidden: list[int] = spec([4096, 1000], help="hidden widths of the image projector")
    text_hidden: list[int] = spec([1000, 300], help="hidden widths of the text projector")
    dim: int = spec(40, help="common-space dimension", low=4)
    label_weight: float = spec(50.0, help="weight of the label loss L_lab in L_emb", low=0.0)
    sim_weight: float = spec(1.0, help="weight of the paired distance L_sim in L_emb", low=0.0)
    dis_weight: float = spec(0.2, help="weight of the dissimilar-pair hinge L_dis in L_emb", low=0.0)
    margin: float = spec(0.1, help="margin of the dissimilar-pair hinge", low=0.0)
    adv_weight: float = spec(1.0, help="factor on the gradient-reversal coefficient lambda_p", low=0.0)
    label_loss: Literal["auto", "softmax", "bce"] = spec(
        "auto", help="label loss: softmax CE, per-label BCE, or auto (softmax when every row has one label)")
    patience: int | None = spec(None, help="early stopping after this many epochs without improvement")


def _mlp_tanh(widths: list[int]) -> nn.Sequential:
    """Linear layers with tanh after every one (the last included); Xavier-uniform, zero bias."""
    layers: list[nn.Module] = []
    for d_in, d_out in zip(widths[:-1], widths[1:]):
        layers += [_linear(d_in, d_out), nn.Tanh()]
    return nn.Sequential(*layers)


def _linear(d_in: int, d_out: int) -> nn.Linear:
    lin = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class ACMRModel(nn.Module):
    """Two tanh projectors, a shared label classifier and the modality classifier D."""

    def __init__(self, d_img: int, d_txt: int, p: ACMRParams, c: int) -> None:
        super().__init__()
        self.img = _mlp_tanh([d_img, *p.image_hidden, p.dim])
        self.txt = _mlp_tanh([d_txt, *p.text_hidden, p.dim])
        self.classifier = _linear(p.dim, c)
        self.domain = nn.Sequential(_linear(p.dim, p.dim // 2), _linear(p.dim // 2, p.dim // 4),
                                    _linear(p.dim // 4, 2))

    def embedding_parameters(self) -> list[nn.Parameter]:
        return [*self.img.parameters(), *self.txt.parameters(), *self.classifier.parameters()]


@register_method
class ACMR(Method):
    name = "acmr"
    description = "ACMR (MM 2017): tanh projectors, label + pair losses, modality classifier behind gradient reversal"
    Params = ACMRParams
    supports_missing = True
    # The release has one setting (NUS-WIDE-10k), so there are no per-dataset presets.
    presets: dict[str, dict[str, Any]] = {}
    test_params = {"epochs": 3, "batch": 40, "image_hidden": [32, 24], "text_hidden": [24, 16], "dim": 16,
                   "lr": 1e-2}

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Learning rate, the embedding-loss weights and the strength of the adversarial game."""
        return {"lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
                "label_weight": trial.suggest_float("label_weight", 1.0, 100.0, log=True),
                "dis_weight": trial.suggest_float("dis_weight", 0.01, 2.0, log=True),
                "adv_weight": trial.suggest_float("adv_weight", 0.01, 2.0, log=True)}

    def build(self, train: CrossModalData, ctx: FitContext) -> ACMRModel:
        """The untrained model and its two optimisers, initialised from the run seed."""
        p = self.params
        with seeded(ctx.seed):
            model = ACMRModel(train.image.shape[1], train.text.shape[1], p, train.num_labels)
        self.model, self.device = model.to(ctx.device), ctx.device
        betas = (p.adam_beta1, p.adam_beta2)
        self.opt_emb = torch.optim.Adam(model.embedding_parameters(), lr=p.lr, betas=betas)
        self.opt_dom = torch.optim.Adam(model.domain.parameters(), lr=p.lr_domain, betas=betas)
        single = bool((train.labels.sum(1) == 1).all())
        self.single_label = {"auto": single, "softmax": True, "bce": False}[p.label_loss]
        return self.model

    def batch_losses(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, lam: float,
                     im: torch.Tensor | None = None, tm: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """L_emb, L_adv and their sum `loss` (D sees the embeddings through reversal with coefficient lam)."""
        p, m = self.params, self.model
        v, w = m.img(x), m.txt(t)
        lab = (acmr_label_loss(m.classifier(v), y, self.single_label, im)
               + acmr_label_loss(m.classifier(w), y, self.single_label, tm))
        paired = im if tm is None else (tm if im is None else im & tm)
        sim = frobenius_distance(v, w, paired)
        dis = acmr_dissimilarity(v, w, y, p.margin, im, tm)
        emb = p.label_weight * lab + p.sim_weight * sim + p.dis_weight * dis
        adv = modality_loss(m.domain(reverse_gradient(v, lam)), m.domain(reverse_gradient(w, lam)), im, tm)
        return {"loss": emb + adv, "emb": emb, "adv": adv, "label": lab, "sim": sim, "dis": dis}

    def train_step(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, lam: float,
                   im: torch.Tensor | None = None, tm: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One forward pass, one backward, both optimisers step."""
        parts = self.batch_losses(x, t, y, lam, im, tm)
        self.opt_emb.zero_grad(set_to_none=True)
        self.opt_dom.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.opt_emb.step()
        self.opt_dom.step()
        return parts

    def fit(self, train: CrossModalData, val: CrossModalData, ctx: FitContext) -> None:
        p, dev = self.params, ctx.device
        model = self.build(train, ctx)
        data = train_tensors(train, dev)
        gen = ctx.generator()

        def epoch(e: int) -> dict[str, float]:
            lam = p.adv_weight * dann_lambda((e - 1) / max(1, p.epochs))
            batches = shuffled_batches(train.n, p.batch, gen, dev)
            if len(batches) > 1 and batches[-1].numel() < p.batch:
                batches.pop()  # the release drops the last incomplete batch
            means = EpochMeans()
            for idx in batches:
                b = data.rows(idx)
                means.add(self.train_step(b.image, b.text, b.labels, lam, b.image_present, b.text_present))
            return {"lambda": lam, **means.means()}

        run_epochs(ctx, model, epoch, lambda: validation_map(self, val, device=dev), p.epochs, p.patience)

    def encode(self, image: np.ndarray | None = None, text: np.ndarray | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The projectors' outputs (in (-1, 1)^dim), float32."""
        require_fitted(self)
        return encode_pair(self.model, self.model.img, self.model.txt, image, text, self.device, self.params.dim)
