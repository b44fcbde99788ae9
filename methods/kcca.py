"""Kernel CCA with a Nystrom low-rank kernel approximation (Lai & Fyfe 2000; Akaho 2001; Bach &
Jordan 2002; Hardoon et al. 2004; for cross-modal retrieval e.g. Rasiwasia et al. 2010's
follow-ups).

Per view an RBF kernel k(a, b) = exp(-|a - b|^2 / (2 sigma^2)), sigma = `width` x the median
pairwise distance among the landmarks (the median heuristic). Exact KCCA eigendecomposes the
n x n centred kernels (cca-zoo 4.0.1 does: O(n^3) time and several n x n float64 matrices,
unusable at n = 18k), so each view is mapped to Nystrom features instead:

    L = `rank` training rows drawn at random (the same rows for both views, seeded by the run),
    K_LL = V diag(lambda) V'  (eigenpairs with lambda <= 1e-10 lambda_max dropped),
    phi(x) = k(x, L) V diag(lambda)^{-1/2}          so that phi(x) . phi(x') ~ k(x, x'),

then ridge CCA on the features exactly as `cca` does it (methods/common/cca_math.py): centre
with the training means, C = Phi'Phi/n + reg (trace(C)/d) I, T = C_xx^{-1/2} C_xy C_yy^{-1/2}
= U S V', A = C_xx^{-1/2} U_k, embeddings scaled by S^power, cosine retrieval.
With rank = n the features reproduce the kernel (Phi Phi' = K), and the problem is exactly
regularised KCCA in its dual form max a'K_x K_y b / sqrt(a'(K_x^2/n + r K_x)a ...) (Hardoon
et al.'s regularisation): tests/test_baselines_shallow.py checks this against cca-zoo's KCCA.

Memory is O(rank^2 + chunk x rank): the features are never stored, only their sums are
accumulated over row chunks (benchmarks/kcca_memory.py: 20k rows, 4096-d image, 1386-d text,
rank 1024 add 0.3 to 0.4 GiB of peak memory on top of the data; rank 2048, 0.6 GiB).
Incomplete-modal data: no unpaired learning; the harness's `missing_policy` applies (drop the
incomplete rows, or keep their zero-filled features as pairs).
There is no released code to follow (nor a per-dataset setting): this is textbook KCCA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.data import CrossModalData
from bench.method import FitContext, Method
from bench.params import spec
from bench.registry import register_method

from .common.cca_math import add_ridge, cca_directions, ridge_strength
from .common.training import require_fitted

CHUNK = 2048
MEDIAN_ROWS = 1000


@dataclass
class KCCAParams:
    dim: int = spec(64, help="number of canonical directions kept", low=1)
    rank: int = spec(1024, help="Nystrom landmarks per view (rank of the kernel approximation)", low=1)
    reg: float = spec(1.0, help="ridge on each feature covariance, relative to its mean variance", low=0.0)
    width: float = spec(1.0, help="RBF width sigma as a multiple of the median pairwise distance", low=1e-6)
    power: float = spec(1.0, help="scale the canonical variates by correlation**power", low=0.0)


def sq_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i - b_j|^2 for all pairs, clamped at 0 against rounding."""
    return ((a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2 * a @ b.T).clamp_min(0)


def rbf(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """exp(-|a_i - b_j|^2 / (2 sigma^2))."""
    return torch.exp(-sq_distances(a, b) / (2 * sigma * sigma))


def median_distance(x: torch.Tensor) -> float:
    """Median Euclidean distance over distinct pairs of rows (the median heuristic's sigma)."""
    d = sq_distances(x, x)
    iu = torch.triu_indices(x.shape[0], x.shape[0], 1, device=x.device)
    med = float(d[iu[0], iu[1]].median().sqrt()) if x.shape[0] > 1 else 0.0
    return med if med > 0 else 1.0


def nystrom_basis(k_ll: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """V diag(lambda)^{-1/2} over the eigenpairs of K_LL with lambda > rtol * lambda_max."""
    vals, vecs = torch.linalg.eigh(k_ll)
    keep = vals > rtol * vals.max()
    return vecs[:, keep] * vals[keep].rsqrt()


class NystromRBF:
    """The Nystrom feature map of one view: phi(x) = rbf(x, L) @ basis."""

    def __init__(self, landmarks: torch.Tensor, sigma: float) -> None:
        self.landmarks, self.sigma = landmarks, sigma
        self.basis = nystrom_basis(rbf(landmarks, landmarks, sigma))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return rbf(x, self.landmarks, self.sigma) @ self.basis


def feature_moments(fx: NystromRBF, fy: NystromRBF, x: np.ndarray, y: np.ndarray, dev: torch.device
                    ) -> tuple[torch.Tensor, ...]:
    """Means and 1/n covariances (C_xx, C_yy, C_xy) of the paired features, accumulated by chunks."""
    n = x.shape[0]
    dx, dy = fx.basis.shape[1], fy.basis.shape[1]
    f64 = dict(dtype=torch.float64, device=dev)
    sx, sy = torch.zeros(dx, **f64), torch.zeros(dy, **f64)
    sxx, syy, sxy = torch.zeros(dx, dx, **f64), torch.zeros(dy, dy, **f64), torch.zeros(dx, dy, **f64)
    for i in range(0, n, CHUNK):
        px = fx(torch.as_tensor(x[i:i + CHUNK], **f64))
        py = fy(torch.as_tensor(y[i:i + CHUNK], **f64))
        sx += px.sum(0)
        sy += py.sum(0)
        sxx += px.T @ px
        syy += py.T @ py
        sxy += px.T @ py
    mx, my = sx / n, sy / n
    return mx, my, sxx / n - torch.outer(mx, mx), syy / n - torch.outer(my, my), sxy / n - torch.outer(mx, my)


@register_method
class KCCA(Method):
    name = "kcca"
    description = "kernel CCA (RBF, Nystrom rank-m approximation); cosine retrieval in the canonical space"
    Params = KCCAParams
    test_params = {"rank": 128}

    @classmethod
    def search_space(cls, trial):
        return {"dim": trial.suggest_int("dim", 4, 256, log=True),
                "rank": trial.suggest_categorical("rank", [256, 512, 1024, 2048]),
                "reg": trial.suggest_float("reg", 1e-3, 10.0, log=True),
                "width": trial.suggest_float("width", 0.25, 4.0, log=True),
                "power": trial.suggest_float("power", 0.0, 4.0)}

    def fit(self, train: CrossModalData, val: CrossModalData, ctx: FitContext) -> None:
        p = self.params
        dev = ctx.device if ctx.device.type != "mps" else torch.device("cpu")  # float64 eigh
        m = min(p.rank, train.n)
        picked = np.sort(np.random.default_rng(ctx.seed).choice(train.n, size=m, replace=False))
        maps = []
        for feats in (train.image, train.text):
            land = torch.as_tensor(feats[picked], dtype=torch.float64, device=dev)
            sigma = p.width * median_distance(land[:MEDIAN_ROWS])
            maps.append(NystromRBF(land, sigma))
        self.fx, self.fy = maps
        self.sigma = (self.fx.sigma, self.fy.sigma)
        mx, my, cxx, cyy, cxy = feature_moments(self.fx, self.fy, train.image, train.text, dev)
        self.ridge = (ridge_strength(cxx, p.reg), ridge_strength(cyy, p.reg))  # absolute, for reference
        a, b, s = cca_directions(add_ridge(cxx, p.reg), add_ridge(cyy, p.reg), cxy, p.dim)
        scale = s.clamp_min(1e-12) ** p.power
        self.mx, self.my, self.a, self.b = mx, my, a * scale, b * scale
        self.correlations = s.cpu().numpy()
        ctx.log(0, top_correlation=float(s[0]), mean_correlation=float(s.mean()), rank_image=self.fx.basis.shape[1],
                rank_text=self.fy.basis.shape[1])

    def encode(self, image=None, text=None):
        require_fitted(self, "a")
        def proj(v, fmap, mean, w):
            if v is None:
                return None
            v = np.asarray(v)
            out = [((fmap(torch.as_tensor(v[i:i + CHUNK], dtype=torch.float64, device=w.device)) - mean) @ w)
                   .float().cpu() for i in range(0, v.shape[0], CHUNK)]
            return torch.cat(out).numpy() if out else np.zeros((0, w.shape[1]), np.float32)
        return proj(image, self.fx, self.mx, self.a), proj(text, self.fy, self.my, self.b)
