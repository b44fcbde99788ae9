"""Regularised linear CCA (H. Hotelling, "Relations between two sets of variates", Biometrika 1936;
for cross-modal retrieval N. Rasiwasia et al., "A new approach to cross-modal multimedia
retrieval", ACM MM 2010). Textbook maths; there is no release to follow.

Objective: max_{a, b} a'C_xy b subject to a'C_xx a = b'C_yy b = 1, then the next directions
uncorrelated with the first. With centred views X, Y (training means): C_xx = X'X/n + r_x I,
C_yy likewise, C_xy = X'Y/n, where the ridge r = reg * trace(C)/d scales with each view's average
variance. Whitening W = C^{-1/2} and the SVD W_x C_xy W_y = U S V' give projections
A = W_x U_k, B = W_y V_k (k = `dim`) and the canonical correlations S. Embeddings
(x - mean_x) A S^power, (y - mean_y) B S^power (power 0 = plain canonical variates); retrieval
is by cosine. Queries and gallery are centred with the training means.
The maths lives in methods/common/cca_math.py (shared with kcca, mlcca, dcca). Checked against
cca-zoo 4.0.1 and scikit-learn 1.9 (tests/test_baselines_shallow.py): with reg = 0 the same
canonical correlations to 1e-4; cca-zoo's ridge is a shrinkage (1 - c) S + c I on 1/(n-1)
covariances, which gives the same directions as ours when c/(1 - c) = reg trace(S)/d n/(n-1).
Incomplete-modal data: no unpaired learning; the harness's `missing_policy` applies (drop the
incomplete rows, or keep their zero-filled features as pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.data import CrossModalData
from bench.method import FitContext, Method
from bench.params import spec
from bench.registry import register_method

from .common.cca_math import fit_linear_cca, project
from .common.training import require_fitted


@dataclass
class CCAParams:
    dim: int = spec(64, help="number of canonical directions kept", low=1)
    reg: float = spec(1e-2, help="ridge on each covariance, relative to its mean variance", low=0.0)
    power: float = spec(1.0, help="scale the canonical variates by correlation**power", low=0.0)


@register_method
class CCA(Method):
    name = "cca"
    description = "regularised linear CCA; cosine retrieval in the canonical space"
    Params = CCAParams

    @classmethod
    def search_space(cls, trial):
        return {"dim": trial.suggest_int("dim", 4, 256, log=True),
                "reg": trial.suggest_float("reg", 1e-4, 1.0, log=True),
                "power": trial.suggest_float("power", 0.0, 4.0)}

    def fit(self, train: CrossModalData, val: CrossModalData, ctx: FitContext) -> None:
        dev = ctx.device if ctx.device.type != "mps" else torch.device("cpu")  # float64 eigh
        x = torch.as_tensor(train.image, dtype=torch.float64, device=dev)
        y = torch.as_tensor(train.text, dtype=torch.float64, device=dev)
        fitted = fit_linear_cca(x, y, self.params.dim, self.params.reg)
        s = fitted.correlations
        scale = s.clamp_min(1e-12) ** self.params.power
        self.mx, self.my = fitted.mean_x, fitted.mean_y
        self.a, self.b = fitted.a * scale, fitted.b * scale
        self.correlations = s.cpu().numpy()
        ctx.log(0, top_correlation=float(s[0]), mean_correlation=float(s.mean()))

    def encode(self, image=None, text=None):
        require_fitted(self, "a")
        return project(image, self.mx, self.a), project(text, self.my, self.b)
