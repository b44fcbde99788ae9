"""Multi-label CCA (ml-CCA; V. Ranjan, N. Rasiwasia, C. V. Jawahar, "Multi-Label Cross-modal
Retrieval", ICCV 2015). The authors released no code; this follows the paper.

CCA learns from the given pairs (x_i, y_i) only. ml-CCA pairs every image with every text,
weighted by the semantic similarity of their labels, s_ij = cos(z_i, z_j) >= 0:

    C_xy = sum_ij s_ij (x_i - mu_x)(y_j - mu_y)' / W,        W = sum_ij s_ij,

and with Z~ the row-normalised label matrix (s_ij = z~_i . z~_j) the double sum factorises,

    sum_ij s_ij x_i y_j' = (X'Z~)(Z~'Y),

which costs O(n c d) and never forms the n x n similarity matrix (the paper's fast form).
Within-view covariances: plain, C_xx = sum_i (x_i - mu_x)(x_i - mu_x)'/n (default), or with
`weighted_cov` each item weighted by its total similarity w_i = sum_j s_ij, C_xx =
sum_i w_i (x_i - mu_x)(x_i - mu_x)'/W with the weighted mean mu_x = sum_i w_i x_i / W (then C_xx,
C_yy, C_xy are the moments of one joint distribution over pairs, P(i, j) = s_ij / W, and the
canonical correlations are true correlations in [0, 1]). Then, as in `cca`: relative ridge,
T = C_xx^{-1/2} C_xy C_yy^{-1/2} = U S V', A = C_xx^{-1/2} U_k, B = C_yy^{-1/2} V_k (the
regularised generalised eigenproblem), embeddings scaled by S^power, cosine retrieval.
Dividing by W (the paper writes the sums unnormalised) makes the reduction exact: when every
item is only similar to itself (s = I) ml-CCA is `cca` with the same ridge (a test checks it).

Incomplete-modal data (`supports_missing`): the pairs need not be the same item, so ml-CCA
learns from unpaired rows: the sums run over images i present and texts j present
(X_I'Z~_I)(Z~_T'Y_T); each view's mean and covariance come from its present rows. This goes
beyond the paper (which assumes paired data) and reduces to it on complete data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.data import CrossModalData
from bench.method import FitContext, Method
from bench.params import spec
from bench.registry import register_method

from .common.cca_math import add_ridge, cca_directions, project
from .common.training import require_fitted


@dataclass
class MLCCAParams:
    dim: int = spec(64, help="number of canonical directions kept", low=1)
    reg: float = spec(1e-2, help="ridge on each covariance, relative to its mean variance", low=0.0)
    power: float = spec(1.0, help="scale the canonical variates by correlation**power", low=0.0)
    weighted_cov: bool = spec(False, help="weight each item's within-view covariance by its total label similarity")


def normalised_labels(z: torch.Tensor) -> torch.Tensor:
    """Rows of z scaled to unit length (s_ij = cosine of label vectors = Z~ Z~'); zero rows stay 0."""
    return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)


def label_weighted_moments(x: torch.Tensor, y: torch.Tensor, zx: torch.Tensor, zy: torch.Tensor, weighted: bool
                           ) -> tuple[torch.Tensor, ...]:
    """(mu_x, mu_y, C_xx, C_yy, C_xy) of ml-CCA from images x with labels zx and texts y with
    labels zy (not necessarily the same items); zx, zy row-normalised. C_xy is the s-weighted
    cross-covariance over all (image, text) pairs, by the fast form (X'Z~_x)(Z~_y'Y)."""
    wx = zx @ zy.sum(0)  # w_i = sum_j s_ij (image side)
    wy = zy @ zx.sum(0)  # w_j = sum_i s_ij (text side)
    total = wx.sum()
    if weighted:
        mx, my = wx @ x / total, wy @ y / total
        xc, yc = x - mx, y - my
        cxx, cyy = (xc * wx[:, None]).T @ xc / total, (yc * wy[:, None]).T @ yc / total
    else:
        mx, my = x.mean(0), y.mean(0)
        xc, yc = x - mx, y - my
        cxx, cyy = xc.T @ xc / x.shape[0], yc.T @ yc / y.shape[0]
    cxy = (xc.T @ zx) @ (zy.T @ yc) / total
    return mx, my, cxx, cyy, cxy


@register_method
class MLCCA(Method):
    name = "mlcca"
    description = "multi-label CCA (ICCV 2015): label-similarity-weighted cross-covariance over all pairs"
    Params = MLCCAParams
    supports_missing = True

    @classmethod
    def search_space(cls, trial):
        return {"dim": trial.suggest_int("dim", 4, 256, log=True),
                "reg": trial.suggest_float("reg", 1e-4, 1.0, log=True),
                "power": trial.suggest_float("power", 0.0, 4.0),
                "weighted_cov": trial.suggest_categorical("weighted_cov", [False, True])}

    def fit(self, train: CrossModalData, val: CrossModalData, ctx: FitContext) -> None:
        p = self.params
        dev = ctx.device if ctx.device.type != "mps" else torch.device("cpu")  # float64 eigh
        every = np.ones(train.n, bool)
        im = every if train.image_present is None else train.image_present
        tm = every if train.text_present is None else train.text_present
        z = normalised_labels(torch.as_tensor(train.labels, dtype=torch.float64, device=dev))
        x = torch.as_tensor(train.image[im], dtype=torch.float64, device=dev)
        y = torch.as_tensor(train.text[tm], dtype=torch.float64, device=dev)
        rows_x, rows_y = torch.as_tensor(im, device=dev), torch.as_tensor(tm, device=dev)
        mx, my, cxx, cyy, cxy = label_weighted_moments(x, y, z[rows_x], z[rows_y], p.weighted_cov)
        a, b, s = cca_directions(add_ridge(cxx, p.reg), add_ridge(cyy, p.reg), cxy, p.dim)
        scale = s.clamp_min(1e-12) ** p.power
        self.mx, self.my, self.a, self.b = mx, my, a * scale, b * scale
        self.correlations = s.cpu().numpy()
        ctx.log(0, top_correlation=float(s[0]), mean_correlation=float(s.mean()))

    def encode(self, image=None, text=None):
        require_fitted(self, "a")
        return project(image, self.mx, self.a), project(text, self.my, self.b)
