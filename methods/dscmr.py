"""DSCMR: Deep Supervised Cross-Modal Retrieval (Zhen, Hu, Wang, Peng, CVPR 2019).

Written from the paper and the facts of the authors' PyTorch release (penghu-cs/DSCMR on GitHub),
not from its code.

Model:
    u = W_s ReLU(W_img x + b) + b_s,  v = W_s ReLU(W_txt t + b') + b_s      retrieval features (dim)
    p = W_p u + b_p,  q = W_p v + b_p                                         shared label predictor
  W_img: d_img -> hidden, W_txt: d_txt -> hidden (each + ReLU); W_s: hidden -> dim SHARED, no
  activation; W_p: dim -> c SHARED, no output nonlinearity. PyTorch default initialisation.
Loss (`common.baseline_losses.dscmr_loss`):
    J = J1 + 1e-3 J2 + 0.1 J3
    J1 = mean_i ||p_i - y_i||_2 + mean_i ||q_i - y_i||_2
    J2 = sum over (u,u), (u,v), (v,v) of mean_ij [log(1 + e^theta_ij) - S_ij theta_ij],
         theta_ij = cos(a_i, b_j) / 2 (eps 1e-6 on the product of norms), S_ij = y_i . y_j,
         the NUMBER of shared labels (i = j kept in the mean)
    J3 = mean_i ||u_i - v_i||_2
Optimiser: Adam lr 1e-4, betas (0.5, 0.999), no weight decay, batch 100, 500 epochs.

Incomplete-modal data (`supports_missing`): DSCMR learns from unpaired rows. An image-only row
enters J1 through its image prediction and J2 through the (u,u) pairs and as the image side of
the (u,v) pairs; likewise for text-only rows; J3 uses rows with both modalities. On complete
data this is the release's loss exactly.

Follows / departs from the release:
  - same layers, loss, constants and optimiser;
  - the release trains in a fixed, unshuffled order; here batches are shuffled each epoch
    (the harness's protocol); the last incomplete batch is kept, as the release's DataLoader does;
  - the release keeps the epoch with the best TEST mAP; here the epoch is chosen on the
    validation split;
  - the release evaluates with a single-label (argmax) mAP; the harness's multi-label mAP
    applies to every method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.data import CrossModalData
from bench.method import FitContext, Method, run_epochs, validation_map
from bench.params import spec
from bench.registry import register_method

from .common.baseline_losses import dscmr_loss
from .common.training import EpochMeans, encode_pair, require_fitted, seeded, shuffled_batches, train_tensors


@dataclass
class DSCMRParams:
    epochs: int = spec(500, help="training epochs (release: 500)", low=0)
    batch: int = spec(100, help="minibatch size", low=1)
    lr: float = spec(1e-4, help="Adam learning rate", low=0.0)
    adam_beta1: float = spec(0.5, help="Adam beta1", low=0.0, high=1.0)
    adam_beta2: float = spec(0.999, help="Adam beta2", low=0.0, high=1.0)
    hidden: int = spec(2048, help="width of each modality's ReLU layer", low=1)
    dim: int = spec(1024, help="common-space dimension (output of the shared linear layer)", low=1)
    nll_weight: float = spec(1e-3, help="weight of the pairwise label-similarity loss J2", low=0.0)
    pair_weight: float = spec(0.1, help="weight of the paired feature distance J3", low=0.0)
    patience: int | None = spec(None, help="early stopping after this many epochs without improvement")


class DSCMRModel(nn.Module):
    """Per-modality ReLU layers, a shared linear projection and a shared linear label predictor."""

    def __init__(self, d_img: int, d_txt: int, hidden: int, dim: int, c: int) -> None:
        super().__init__()
        self.img = nn.Sequential(nn.Linear(d_img, hidden), nn.ReLU())
        self.txt = nn.Sequential(nn.Linear(d_txt, hidden), nn.ReLU())
        self.shared = nn.Linear(hidden, dim)
        self.predict = nn.Linear(dim, c)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(self.img(x))

    def encode_text(self, t: torch.Tensor) -> torch.Tensor:
        return self.shared(self.txt(t))


@register_method
class DSCMR(Method):
    name = "dscmr"
    description = "DSCMR (CVPR 2019): shared projection + label predictor, pairwise label-similarity loss"
    Params = DSCMRParams
    supports_missing = True
    # The release ships one setting for all datasets (main.py); the ALGCN authors' multi-label
    # runs state no other, so there are no per-dataset presets.
    presets: dict[str, dict[str, Any]] = {}
    test_params = {"epochs": 3, "batch": 40, "hidden": 32, "dim": 16, "lr": 1e-2}

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Learning rate and the two loss weights."""
        return {"lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
                "nll_weight": trial.suggest_float("nll_weight", 1e-4, 1.0, log=True),
                "pair_weight": trial.suggest_float("pair_weight", 1e-3, 1.0, log=True)}

    def fit(self, train: CrossModalData, val: CrossModalData, ctx: FitContext) -> None:
        p, dev = self.params, ctx.device
        with seeded(ctx.seed):
            model = DSCMRModel(train.image.shape[1], train.text.shape[1], p.hidden, p.dim, train.num_labels)
        self.model, self.device = model.to(dev), dev
        data = train_tensors(train, dev)
        opt = torch.optim.Adam(model.parameters(), lr=p.lr, betas=(p.adam_beta1, p.adam_beta2))
        gen = ctx.generator()

        def epoch(_: int) -> dict[str, float]:
            means = EpochMeans()
            for idx in shuffled_batches(train.n, p.batch, gen, dev):
                b = data.rows(idx)
                u, v = model.encode_image(b.image), model.encode_text(b.text)
                parts = dscmr_loss(u, v, model.predict(u), model.predict(v), b.labels, p.nll_weight, p.pair_weight,
                                   b.image_present, b.text_present)
                opt.zero_grad(set_to_none=True)
                parts["loss"].backward()
                opt.step()
                means.add(parts)
            return means.means()

        run_epochs(ctx, model, epoch, lambda: validation_map(self, val, device=dev), p.epochs, p.patience)

    def encode(self, image: np.ndarray | None = None, text: np.ndarray | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The shared layer's outputs u (images) and v (texts), float32."""
        require_fitted(self)
        return encode_pair(self.model, self.model.encode_image, self.model.encode_text, image, text, self.device,
                           self.params.dim)
