"""Canonical correlation maths shared by the CCA family (cca, kcca, mlcca, dcca): pure functions.

Conventions: rows are samples; views x (n, p) and y (n, q); every function works in the dtype
and on the device of its inputs (the family uses float64). Covariances are 1/n unless `ddof`
says otherwise. Canonical directions come from the whitened cross-covariance:
    T = C_xx^{-1/2} C_xy C_yy^{-1/2} = U S V',   A = C_xx^{-1/2} U_k,   B = C_yy^{-1/2} V_k,
so that A' C_xx A = I, B' C_yy B = I and A' C_xy B = diag(S_k), S sorted descending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def inv_sqrt(c: torch.Tensor, floor: float = 1e-12, drop: float | None = None) -> torch.Tensor:
    """C^{-1/2} of a symmetric positive semi-definite matrix by eigendecomposition.

    Eigenvalues are clamped below at `floor`; with `drop`, eigenpairs whose eigenvalue is
    <= drop are discarded instead (a pseudo-inverse square root, as the DCCA release does)."""
    vals, vecs = torch.linalg.eigh(c)
    if drop is not None:
        keep = vals > drop
        vals, vecs = vals[keep], vecs[:, keep]
    return (vecs * vals.clamp_min(floor).rsqrt()) @ vecs.T


def ridge_strength(c: torch.Tensor, reg: float) -> float:
    """reg * trace(C)/d: a ridge relative to the mean variance (scale-free)."""
    return reg * (float(c.trace()) / c.shape[0] + 1e-12)


def add_ridge(c: torch.Tensor, reg: float) -> torch.Tensor:
    """C + ridge_strength(C, reg) I."""
    return c + ridge_strength(c, reg) * torch.eye(c.shape[0], dtype=c.dtype, device=c.device)


def covariances(x: torch.Tensor, y: torch.Tensor, ddof: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(C_xx, C_yy, C_xy) of already centred views, divided by n - ddof."""
    den = x.shape[0] - ddof
    return x.T @ x / den, y.T @ y / den, x.T @ y / den


def cca_directions(cxx: torch.Tensor, cyy: torch.Tensor, cxy: torch.Tensor, k: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, B, s): the top-k canonical directions of each view and the canonical correlations.

    Solves max a'C_xy b s.t. a'C_xx a = b'C_yy b = 1 via T = C_xx^{-1/2} C_xy C_yy^{-1/2} = U S V'
    (regularise C_xx / C_yy before calling)."""
    wx, wy = inv_sqrt(cxx), inv_sqrt(cyy)
    u, s, vh = torch.linalg.svd(wx @ cxy @ wy)
    k = min(k, s.shape[0])
    return wx @ u[:, :k], wy @ vh[:k].T, s[:k]


@dataclass
class LinearCCA:
    """A fitted linear CCA: view means, projections and canonical correlations."""

    mean_x: torch.Tensor
    mean_y: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    correlations: torch.Tensor

    def project(self, v: torch.Tensor, view: str) -> torch.Tensor:
        """(v - mean) @ projection of view 'x' or 'y'."""
        return (v - self.mean_x) @ self.a if view == "x" else (v - self.mean_y) @ self.b


def fit_linear_cca(x: torch.Tensor, y: torch.Tensor, k: int, reg: float, *, relative: bool = True,
                   ddof: int = 0) -> LinearCCA:
    """Ridge CCA of paired views x, y (rows paired): centre with the training means, covariances
    over n - ddof, ridge `reg` relative to each view's mean variance (or absolute, reg * I)."""
    mx, my = x.mean(0), y.mean(0)
    cxx, cyy, cxy = covariances(x - mx, y - my, ddof)
    if relative:
        cxx, cyy = add_ridge(cxx, reg), add_ridge(cyy, reg)
    else:
        cxx = cxx + reg * torch.eye(cxx.shape[0], dtype=cxx.dtype, device=cxx.device)
        cyy = cyy + reg * torch.eye(cyy.shape[0], dtype=cyy.dtype, device=cyy.device)
    a, b, s = cca_directions(cxx, cyy, cxy, k)
    return LinearCCA(mx, my, a, b, s)


def dcca_correlation(h1: torch.Tensor, h2: torch.Tensor, top: int | None = None, r1: float = 1e-3,
                     r2: float = 1e-3, eps: float = 1e-9) -> torch.Tensor:
    """The DCCA objective of a minibatch (Andrew et al. 2013, as in the PyTorch release):

        H centred per column, m rows;  S11 = H1'H1/(m-1) + r1 I,  S22 = H2'H2/(m-1) + r2 I,
        S12 = H1'H2/(m-1);  eigenpairs of S11, S22 with eigenvalue <= eps dropped before the
        inverse square root;  T = S11^{-1/2} S12 S22^{-1/2};
        corr = sum over the `top` largest eigenvalues e of (T'T + r1 I), floored at eps, of sqrt(e)

    i.e. (up to the r1 inside) the sum of the top singular values of T, the trace norm, not the
    sum of their squares. `top` defaults to all. The loss is -corr."""
    m = h1.shape[0]
    h1, h2 = h1 - h1.mean(0), h2 - h2.mean(0)
    eye1 = torch.eye(h1.shape[1], dtype=h1.dtype, device=h1.device)
    eye2 = torch.eye(h2.shape[1], dtype=h2.dtype, device=h2.device)
    s11 = h1.T @ h1 / (m - 1) + r1 * eye1
    s22 = h2.T @ h2 / (m - 1) + r2 * eye2
    s12 = h1.T @ h2 / (m - 1)
    t = inv_sqrt(s11, floor=0.0, drop=eps) @ s12 @ inv_sqrt(s22, floor=0.0, drop=eps)
    tt = t.T @ t + r1 * eye2
    vals = torch.linalg.eigvalsh(tt)
    vals = torch.where(vals > eps, vals, torch.full_like(vals, eps))
    top = vals.shape[0] if top is None else min(top, vals.shape[0])
    return vals.topk(top).values.sqrt().sum()


__all__ = ["LinearCCA", "add_ridge", "cca_directions", "covariances", "dcca_correlation", "fit_linear_cca",
           "inv_sqrt", "ridge_strength"]


def project(v: Any, mean: torch.Tensor, w: torch.Tensor) -> Any:
    """(v - mean) @ w in float64 on w's device, returned as float32 numpy; None for None."""
    if v is None:
        return None
    t = torch.as_tensor(np.asarray(v), dtype=torch.float64, device=w.device)
    return ((t - mean) @ w).float().cpu().numpy()
