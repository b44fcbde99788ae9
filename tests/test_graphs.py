"""Label-graph builders: the P-GNN adjacency by hand, I-GNN adjacency learnable and recomputed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import builtin_plugin

from bench.data import make_data
from bench.method import FitContext
from bench.params import build
from bench.registry import get_method

graphs = builtin_plugin("methods.common.graphs")

# 4 items, 3 labels: {0,1}, {0}, {0,2}, {2}
TINY = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]])


def test_cooccurrence_counts_pairs_and_labels():
    cooc, nums = graphs.cooccurrence(TINY)
    assert nums.tolist() == [3, 1, 2]
    assert cooc.tolist() == [[0, 1, 1], [1, 0, 0], [1, 0, 0]]


def test_probabilistic_adjacency_matches_hand_derivation():
    # counts (3, 1, 2); ratio_ij = cooc_ij / count_j (column label's count):
    #   (0,1) = 1/1 = 1 -> 1;  (1,0) = 1/3 < .4 -> 0;  (0,2) = 1/2 -> 1;  (2,0) = 1/3 -> 0;  (1,2) = (2,1) = 0.
    # A = [[0,1,1],[0,0,0],[0,0,0]];  A' = 0.5 A + I = [[1,.5,.5],[0,1,0],[0,0,1]];  row sums D = (2, 1, 1).
    # Â = D^-1/2 A'^T D^-1/2: Â_ij = A'_ji / sqrt(D_i D_j):
    #   Â_00 = 1/2, Â_10 = Â_20 = .5/sqrt(2), Â_11 = Â_22 = 1, all others 0.
    cooc, nums = graphs.cooccurrence(TINY)
    got = graphs.probabilistic_adjacency(cooc, nums, t=0.4).numpy()
    r = 0.5 / math.sqrt(2)
    expect = np.array([[0.5, 0, 0], [r, 1, 0], [r, 0, 1]])
    np.testing.assert_allclose(got, expect, atol=1e-6)


def test_probabilistic_adjacency_threshold_is_inclusive_and_ignores_the_cooc_diagonal():
    cooc, nums = graphs.cooccurrence(TINY)
    cooc_diag = cooc + np.diag(nums)  # a dataset file with counts on the diagonal
    np.testing.assert_allclose(graphs.probabilistic_adjacency(cooc_diag, nums, 0.4),
                               graphs.probabilistic_adjacency(cooc, nums, 0.4))
    # t = 1/3 exactly: now (1,0) and (2,0) also pass -> symmetric 0/1 pattern
    a = graphs.probabilistic_adjacency(cooc, nums, 1 / 3).numpy()
    assert a[0, 1] > 0 and a[1, 0] > 0


def test_normalize_adjacency_transposes_and_scales_by_row_sums():
    # A = [[1, 2], [0, 1]]: row sums (3, 1); Â = D^-1/2 A^T D^-1/2 = [[1/3, 0], [2/sqrt(3), 1]]
    a = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    expect = torch.tensor([[1 / 3, 0.0], [2 / math.sqrt(3), 1.0]])
    assert torch.allclose(graphs.normalize_adjacency(a), expect, atol=1e-6)


def test_iterative_adjacency_by_hand():
    # H0 rows e1, (1,1), e2; w = 1: cosines c01 = c12 = 1/√2 ≈ .707 >= t = .5, c02 = 0.
    # A0 = S = [[1, q, 0], [q, 1, q], [0, q, 1]] with q = 1/√2, so A = 0.5 A0 + 0.5 S = A0;
    # row sums (1+q, 1+2q, 1+q); Â_01 = q / sqrt((1+q)(1+2q)), Â_02 = 0, Â_11 = 1/(1+2q).
    h0 = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    a0 = graphs.threshold(graphs.cosine_matrix(h0), 0.5)
    got = graphs.iterative_adjacency(h0, a0, torch.ones(1, 2), 0.5)
    q = 2 ** -0.5
    assert got[0, 1].item() == pytest.approx(q / math.sqrt((1 + q) * (1 + 2 * q)), rel=1e-6)
    assert got[0, 2].item() == 0.0
    assert got[1, 1].item() == pytest.approx(1 / (1 + 2 * q), rel=1e-6)
    # re-weighting the second coordinate changes S (and so Â): w acts inside the cosine
    other = graphs.iterative_adjacency(h0, a0, torch.tensor([[1.0, 3.0]]), 0.5)
    assert not torch.allclose(got, other)


def test_iterative_adjacency_thresholds_the_mean_of_the_k_graphs():
    # H0 rows e1, (1,1), e2; t = 0.5; k = 2 re-weightings:
    #   w1 = (1, 1): cos01 = cos12 = 1/sqrt2 = q, cos02 = 0;
    #   w2 = (1, 3): rows (1,0), (1,3), (0,3): cos01 = 1/sqrt10 = r, cos12 = 3/sqrt10 = 3r, cos02 = 0.
    # Mean first: S01 = (q + r)/2 = .5117 >= .5 kept, S12 = (q + 3r)/2 = .828 kept, diagonal 1.
    # (Thresholding each graph first would give S01 = (q + 0)/2 = .354.)
    # A0 = threshold(cos(H0), .5) = [[1, q, 0], [q, 1, q], [0, q, 1]]; A = (A0 + S)/2 (symmetric);
    # row sums d0 = 1 + (q + s01)/2, d1 = 1 + (q + s01)/2 + (q + s12)/2; Â_01 = A_01 / sqrt(d0 d1).
    h0 = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    a0 = graphs.threshold(graphs.cosine_matrix(h0), 0.5)
    w = torch.tensor([[1.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    q, r = 2 ** -0.5, 10 ** -0.5
    s01, s12 = (q + r) / 2, (q + 3 * r) / 2
    a01, a12 = (q + s01) / 2, (q + s12) / 2
    d0, d1 = 1 + a01, 1 + a01 + a12
    got = graphs.iterative_adjacency(h0, a0, w, 0.5)
    assert got[0, 1].item() == pytest.approx(a01 / math.sqrt(d0 * d1), rel=1e-12)
    assert got[1, 1].item() == pytest.approx(1 / d1, rel=1e-12)
    assert got[0, 2].item() == 0.0


def test_probabilistic_graph_is_the_raw_half_plus_identity_matrix():
    # TINY as above: A' = 0.5 A + I = [[1, .5, .5], [0, 1, 0], [0, 0, 1]] before normalisation
    cooc, nums = graphs.cooccurrence(TINY)
    np.testing.assert_allclose(graphs.probabilistic_graph(cooc, nums, 0.4).numpy(),
                               [[1, 0.5, 0.5], [0, 1, 0], [0, 0, 1]])


def _tiny_data(**kw):
    rng = np.random.default_rng(0)
    y = (rng.random((40, 5)) < 0.4).astype(np.uint8)
    y[:, 0] = 1
    return make_data("tiny", rng.normal(size=(40, 6)), rng.normal(size=(40, 4)), y,
                     label_embeddings=rng.normal(size=(5, 7)), **kw)


def _build(name, data, **params):
    entry = get_method(name)
    method = entry.cls(build(entry.cls.Params, {"D": 8, "layers": 2, **params, **entry.fixed}, name))
    return method, method.build(data, FitContext(seed=0))


def test_ignn_adjacency_is_recomputed_each_forward_and_receives_gradients():
    _, model = _build("ignn_con", _tiny_data())
    before = model.adjacency().detach().clone()
    model.classifiers().pow(2).sum().backward()
    assert model.w.grad is not None and model.w.grad.abs().sum() > 0
    assert model.h0.grad is not None and model.h0.grad.abs().sum() > 0
    with torch.no_grad():
        model.w.mul_(torch.linspace(0.2, 3.0, model.w.shape[1]))
    assert not torch.allclose(model.adjacency(), before)


def test_pgnn_uses_dataset_cooccurrence_when_provided():
    data = _tiny_data()
    extras_cooc = np.ones((5, 5)) * 10
    extras_cooc[0, 1] = 0.0
    given = _tiny_data(extras={"adj": extras_cooc, "nums": np.full(5, 10.0)})
    _, m_given = _build("pgnn_con", given)
    _, m_own = _build("pgnn_con", data)
    np.testing.assert_allclose(m_given.adj.numpy(),
                               graphs.probabilistic_adjacency(extras_cooc, np.full(5, 10.0), 0.4).numpy())
    cooc, nums = graphs.cooccurrence(data.labels)
    np.testing.assert_allclose(m_own.adj.numpy(), graphs.probabilistic_adjacency(cooc, nums, 0.4).numpy())
    assert not np.allclose(m_given.adj.numpy(), m_own.adj.numpy())
