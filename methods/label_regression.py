"""Label regression, a sanity baseline: each modality mapped to label space by ridge regression.

W = argmin ||X_c W - (Y - mean Y)||^2 + lam * trace(X_c'X_c)/d * ||W||^2 per modality (X_c centred);
the embedding of an item is its predicted label vector, and retrieval is by cosine between them.
Each modality is fitted on the training rows where it is present, so incomplete rows are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.data import CrossModalData
from bench.method import FitContext, Method
from bench.params import spec
from bench.registry import register_method

from .common.training import require_fitted


@dataclass
class LabelRegressionParams:
    lam: float = spec(1e-1, help="ridge strength, relative to the mean feature variance", low=0.0)


def ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean_x, W, mean_y) of ridge regression y ~ (x - mean_x) W + mean_y."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    gram = xc.T @ xc
    d = gram.shape[0]
    gram += lam * (gram.trace() / d + 1e-12) * torch.eye(d, dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(gram, xc.T @ (y - my))
    return mx, w, my


@register_method
class LabelRegression(Method):
    name = "label_regression"
    description = "ridge regression of each modality onto labels; cosine between predicted label vectors"
    Params = LabelRegressionParams
    supports_missing = True

    @classmethod
    def search_space(cls, trial):
        return {"lam": trial.suggest_float("lam", 1e-4, 10.0, log=True)}

    def fit(self, train: CrossModalData, val: CrossModalData, ctx: FitContext) -> None:
        dev = ctx.device if ctx.device.type != "mps" else torch.device("cpu")
        y = torch.as_tensor(train.labels, dtype=torch.float64, device=dev)
        self.models = {}
        for key, feats, present in (("image", train.image, train.image_present),
                                    ("text", train.text, train.text_present)):
            rows = np.ones(train.n, bool) if present is None else present
            x = torch.as_tensor(feats[rows], dtype=torch.float64, device=dev)
            self.models[key] = ridge(x, y[torch.as_tensor(rows, device=dev)], self.params.lam)

    def encode(self, image=None, text=None):
        require_fitted(self, "models")
        def predict(v, key):
            if v is None:
                return None
            mx, w, my = self.models[key]
            t = torch.as_tensor(np.asarray(v), dtype=torch.float64, device=w.device)
            return ((t - mx) @ w + my).float().cpu().numpy()
        return predict(image, "image"), predict(text, "text")
