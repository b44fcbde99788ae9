"""Label-graph adjacency builders: co-occurrence (P-GNN) and learnable cosine graphs (I-GNN).

Conventions: a label graph is a (c, c) matrix A; `normalize_adjacency` returns
Â = D^-1/2 A^T D^-1/2 with D the row sums of A (the convention of ML-GCN's `gen_adj`, which
GCN layers use as H' = Â H W).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def cooccurrence(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cooc, nums): cooc_ij = #items with labels i and j (zero diagonal), nums_j = #items with label j."""
    y = np.asarray(labels, dtype=np.float64)
    cooc = y.T @ y
    np.fill_diagonal(cooc, 0.0)
    return cooc, y.sum(0)


def normalize_adjacency(a: torch.Tensor) -> torch.Tensor:
    """Â = D^-1/2 A^T D^-1/2, D = diag(row sums of A); Â_ij = A_ji / sqrt(D_i D_j)."""
    d = a.sum(1).clamp_min(1e-12).rsqrt()
    return d[:, None] * a.T * d[None, :]


def probabilistic_graph(cooc: np.ndarray, nums: np.ndarray, t: float) -> torch.Tensor:
    """The raw (un-normalised) P-GNN graph: A_ij = [cooc_ij / nums_j >= t]; return 0.5 A + I.

    The ratio divides by the count of the COLUMN label j, i.e. A_ij estimates P(i | j); this is
    the transpose of ML-GCN's P(j | i) and follows the TPAMI 2023 released code. The diagonal of
    `cooc` is ignored: self-loops come from the + I only. Labels that never occur get only
    their self-loop. The release's GAT masks its attention with this matrix (A_ij > 0).
    """
    cooc = np.asarray(cooc, dtype=np.float64).copy()
    np.fill_diagonal(cooc, 0.0)
    nums = np.asarray(nums, dtype=np.float64)
    ratio = cooc / np.maximum(nums[None, :], 1e-12)
    a = (ratio >= t).astype(np.float64)
    np.fill_diagonal(a, 0.0)
    return torch.as_tensor(0.5 * a + np.eye(a.shape[0]), dtype=torch.float32)


def probabilistic_adjacency(cooc: np.ndarray, nums: np.ndarray, t: float) -> torch.Tensor:
    """P-GNN graph for the GCN: Â = D^-1/2 A^T D^-1/2 of A = `probabilistic_graph(cooc, nums, t)`."""
    return normalize_adjacency(probabilistic_graph(cooc, nums, t))


def cosine_matrix(h: torch.Tensor) -> torch.Tensor:
    """cos_ij = h_i . h_j / (|h_i| |h_j|) between the rows of h (norms floored at 1e-12); batched over
    leading dimensions."""
    z = F.normalize(h, dim=-1, eps=1e-12)
    return z @ z.transpose(-1, -2)


def threshold(s: torch.Tensor, t: float) -> torch.Tensor:
    """thr_t(S)_ij = S_ij [S_ij >= t]: entries below t set to 0 (kept entries stay differentiable)."""
    return s * (s >= t).to(s.dtype)


def iterative_adjacency(h0: torch.Tensor, a0: torch.Tensor, w: torch.Tensor, t: float) -> torch.Tensor:
    """I-GNN graph, recomputed every forward pass.

    S = threshold((1/k) sum_k cosine(H0 * w_k), t): the k re-weighted cosine graphs are
    averaged FIRST and the mean is thresholded (as released), with w (k, e) learnable and H0
    (c, e) learnable; A = 0.5 A0 + 0.5 S with A0 = threshold(cosine(H0_init), t) fixed;
    return Â = D^-1/2 A^T D^-1/2. Both cosines have a unit diagonal, so A has self-loops
    without adding I.
    """
    s = threshold(cosine_matrix(h0[None, :, :] * w[:, None, :]).mean(0), t)
    return normalize_adjacency(0.5 * a0 + 0.5 * s)
