"""The tie rule at every cut-off: equal cosines rank by retrieval index, even when a tie straddles
the K-th place and the cosines are equal only in exact arithmetic (issue 12, item 12).

The reference is exact: every retrieval row is a permutation (or a duplicate) of one integer
vector, so all rows have the same norm and the cosine order is the order of the integer dot
products; ties are exact integer equalities, broken by index. No float enters the ranking.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.metrics import mean_average_precision


def exact_map(q: np.ndarray, r: np.ndarray, lq: np.ndarray, lr: np.ndarray, k: int | None) -> float:
    aps = []
    for i in range(len(q)):
        dots = [int(x) for x in r.astype(np.int64) @ q[i].astype(np.int64)]
        order = sorted(range(len(r)), key=lambda j: (-dots[j], j))  # ties by index ascending
        rel = [bool((lr[j] @ lq[i]) > 0) for j in order]
        if not any(rel):
            continue
        top = rel[:k] if k is not None else rel
        hits, total = 0, 0.0
        for rank, is_rel in enumerate(top, 1):
            if is_rel:
                hits += 1
                total += hits / rank
        denom = sum(rel) if k is None else sum(top)
        aps.append(total / denom if denom else 0.0)
    return sum(aps) / len(aps)


def permuted_case(seed: int):
    rng = np.random.default_rng(seed)
    d = 5
    v = rng.integers(1, 9, size=d)
    rows = [np.roll(v, s) for s in range(d)] + [v[::-1], np.roll(v[::-1], 2)]
    r = np.array([rows[j] for j in rng.integers(0, len(rows), size=40)])  # duplicated items
    q = np.concatenate([np.ones((3, d), dtype=np.int64), rng.integers(0, 4, size=(5, d)) + 1])
    lr = (rng.random((len(r), 3)) < 0.4).astype(np.float32)
    lq = (rng.random((len(q), 3)) < 0.6).astype(np.float32)
    lq[:, 0] = 1
    lr[0, 0] = 1
    return q.astype(np.float32), r.astype(np.float32), lq, lr


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 3, 5, 8, 13, None])
def test_map_at_k_follows_the_tie_rule_with_duplicated_items(seed, k):
    q, r, lq, lr = permuted_case(seed)
    assert mean_average_precision(q, r, lq, lr, k=k) == pytest.approx(exact_map(q, r, lq, lr, k), abs=1e-6)


def test_a_tie_straddling_the_k_th_place_is_cut_by_index():
    # all four retrieval items tie for the query; the relevant ones are at indices 2 and 3,
    # so at K=3 only index 2 is in the top K: AP@3 = (1/3) / 1
    q = np.array([[1.0, 1.0, 1.0]], dtype=np.float32)
    r = np.array([[1, 2, 3], [3, 1, 2], [2, 3, 1], [3, 2, 1]], dtype=np.float32)
    lq = np.array([[1, 0]], dtype=np.float32)
    lr = np.array([[0, 1], [0, 1], [1, 0], [1, 0]], dtype=np.float32)
    assert mean_average_precision(q, r, lq, lr, k=3) == pytest.approx(1 / 3, abs=1e-6)
    assert mean_average_precision(q, r, lq, lr, k=2) == 0.0
