"""bench.metrics agrees with a naive per-query numpy reference, to 1e-6."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.metrics import mean_average_precision, precision_at_k, precision_recall_curve, retrieval_metrics

TOL = 1e-6


# --- the naive reference: one query at a time, plain numpy, float64 ---------------------


def _cosine(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return unit(q) @ unit(r).T


def _ranked_relevance(q, r, lq, lr, i):
    s = _cosine(q[i:i + 1], r)[0]
    order = np.argsort(-s, kind="stable")
    return ((np.asarray(lr, dtype=np.float64) @ np.asarray(lq[i], dtype=np.float64)) > 0)[order]


def naive_map(q, r, lq, lr, k=None):
    aps = []
    for i in range(len(q)):
        rel = _ranked_relevance(q, r, lq, lr, i)
        if not rel.any():
            continue  # undefined for this query: excluded
        top = rel[:k]
        precisions = np.cumsum(top) / np.arange(1, len(top) + 1)
        denom = rel.sum() if k is None else top.sum()
        aps.append(precisions[top].sum() / denom if denom else 0.0)
    return float(np.mean(aps))


def naive_precision_at_k(q, r, lq, lr, k):
    k = min(k, len(r))
    return float(np.mean([_ranked_relevance(q, r, lq, lr, i)[:k].sum() / k for i in range(len(q))]))


def naive_pr_all_ranks(q, r, lq, lr):
    precision, recall = [], []
    for i in range(len(q)):
        rel = _ranked_relevance(q, r, lq, lr, i)
        if rel.any():
            hits = np.cumsum(rel)
            precision.append(hits / np.arange(1, len(rel) + 1))
            recall.append(hits / rel.sum())
    return np.mean(precision, axis=0), np.mean(recall, axis=0)


# --- data ---------------------------------------------------------------------------------


def multi_label(rng, n, c=6, p=0.2):
    return (rng.random((n, c)) < p).astype(np.float32)


def one_hot(rng, n, c=5):
    return np.eye(c, dtype=np.float32)[rng.integers(0, c, n)]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def data(rng):
    """Continuous embeddings, multi-label; some queries share no label with any item."""
    q, r = rng.standard_normal((60, 12)), rng.standard_normal((90, 12))
    lq, lr = multi_label(rng, 60), multi_label(rng, 90)
    lq[:5] = 0  # queries without labels have no relevant item
    return q.astype(np.float32), r.astype(np.float32), lq, lr


@pytest.fixture
def tied(rng):
    """Embeddings of +-1 in 4 dims (cosines are exact multiples of 1/4, so massively tied),
    duplicated rows and all-zero rows (similarity 0 to everything)."""
    q = rng.choice([-1.0, 1.0], size=(40, 4)).astype(np.float32)
    r = rng.choice([-1.0, 1.0], size=(70, 4)).astype(np.float32)
    r[10:20] = r[0]
    q[5:8] = q[0]
    r[30:33] = 0.0
    q[-2:] = 0.0
    return q, r, multi_label(rng, 40, c=4, p=0.3), multi_label(rng, 70, c=4, p=0.3)


# --- mAP ----------------------------------------------------------------------------------


def test_hand_computed_example():
    # Items' cosines to the query: 0 -> 0.6, 1 -> 1.0, 2 -> 0.0, 3 -> 0.8, so the ranking is
    # 1, 3, 0, 2 with relevance 1, 0, 1, 0. AP = (P@1 + P@3) / 2 = (1/1 + 2/3) / 2 = 5/6.
    # AP@2: one relevant in the top 2, at rank 1 -> 1/1 = 1. P@2 = 1/2.
    q = np.array([[1.0, 0.0]])
    r = np.array([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    lq = np.array([[1, 0]])
    lr = np.array([[1, 1], [1, 0], [0, 1], [0, 1]])
    assert mean_average_precision(q, r, lq, lr) == pytest.approx(5 / 6, abs=TOL)
    assert mean_average_precision(q, r, lq, lr, k=2) == pytest.approx(1.0, abs=TOL)
    assert precision_at_k(q, r, lq, lr, [2]) == pytest.approx({2: 0.5}, abs=TOL)


def test_ties_are_broken_by_retrieval_index():
    # All four items tie; relevant ones at indices 1 and 3 rank 2nd and 4th:
    # AP = (1/2 + 2/4) / 2 = 1/2. Ranking them by any other order would change it.
    q = np.array([[1.0, 0.0]])
    r = np.array([[0.0, 1.0]] * 4)
    lq, lr = np.array([[1]]), np.array([[0], [1], [0], [1]])
    assert mean_average_precision(q, r, lq, lr) == pytest.approx(0.5, abs=TOL)


def test_map_matches_naive_on_multi_label_data(data):
    assert mean_average_precision(*data) == pytest.approx(naive_map(*data), abs=TOL)


def test_map_matches_naive_on_single_label_data(rng):
    q, r = rng.standard_normal((50, 8)), rng.standard_normal((80, 8))
    lq, lr = one_hot(rng, 50), one_hot(rng, 80)
    assert mean_average_precision(q, r, lq, lr) == pytest.approx(naive_map(q, r, lq, lr), abs=TOL)


def test_map_matches_naive_with_many_exact_ties(tied):
    assert mean_average_precision(*tied) == pytest.approx(naive_map(*tied), abs=TOL)
    assert mean_average_precision(*tied, k=7) == pytest.approx(naive_map(*tied, k=7), abs=TOL)


def test_queries_without_relevant_items_are_excluded(data):
    q, r, lq, lr = data
    assert mean_average_precision(q, r, lq, lr) == pytest.approx(
        mean_average_precision(q[5:], r, lq[5:], lr), abs=1e-12)


@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_map_at_k_matches_naive(data, k):
    assert mean_average_precision(*data, k=k) == pytest.approx(naive_map(*data, k=k), abs=TOL)


def test_map_at_k_counts_queries_with_no_relevant_item_in_top_k_as_zero():
    # Query 0: relevant item ranks 1st -> AP@1 = 1. Query 1: its only relevant item ranks
    # last -> AP@1 = 0 (counted). Query 2 has no relevant item at all -> excluded.
    q = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    r = np.array([[1.0, 0.0], [0.0, 1.0]])
    lq = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    lr = np.array([[1, 0, 0], [0, 1, 0]])
    assert mean_average_precision(q, r, lq, lr, k=1) == pytest.approx(0.5, abs=TOL)


def test_map_at_k_larger_than_retrieval_set_is_map_at_all(data):
    assert mean_average_precision(*data, k=10_000) == pytest.approx(mean_average_precision(*data), abs=1e-12)


@pytest.mark.parametrize("max_bytes", [1, 24 * 90 * 7])  # one query per chunk; 7 per chunk (uneven last chunk)
def test_small_memory_budget_gives_the_same_answer(data, max_bytes):
    whole = mean_average_precision(*data)
    assert mean_average_precision(*data, max_bytes=max_bytes) == pytest.approx(whole, abs=1e-12)
    assert mean_average_precision(*data, k=5, max_bytes=max_bytes) == pytest.approx(naive_map(*data, k=5), abs=TOL)


def test_no_query_with_a_relevant_item_raises(data):
    q, r, lq, lr = data
    with pytest.raises(ValueError, match="no query has a relevant item"):
        mean_average_precision(q, r, np.zeros_like(lq), lr)
    with pytest.raises(ValueError, match="no query has a relevant item"):
        precision_recall_curve(q, r, np.zeros_like(lq), lr)


def test_precision_at_k_is_zero_not_an_error_when_nothing_is_relevant(data):
    q, r, lq, lr = data
    assert precision_at_k(q, r, np.zeros_like(lq), lr, [1, 5]) == {1: 0.0, 5: 0.0}


def test_numpy_and_torch_inputs_agree(data):
    tensors = [torch.from_numpy(x) for x in data]
    assert mean_average_precision(*tensors) == pytest.approx(mean_average_precision(*data), abs=1e-12)
    assert precision_at_k(*tensors, [5]) == pytest.approx(precision_at_k(*data, [5]), abs=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_naive(tied):
    assert mean_average_precision(*tied, device="cuda") == pytest.approx(naive_map(*tied), abs=TOL)


def test_mismatched_shapes_raise_naming_the_argument(data):
    q, r, lq, lr = data
    with pytest.raises(ValueError, match="query_labels"):
        mean_average_precision(q, r, lq[:-1], lr)
    with pytest.raises(ValueError, match="width"):
        mean_average_precision(q, r[:, :-1], lq, lr)


# --- P@K and PR curve ---------------------------------------------------------------------


def test_precision_at_k_matches_naive_including_k_beyond_n(data, tied):
    for args in (data, tied):
        ks = [1, 5, 20, 1000]
        expected = {k: naive_precision_at_k(*args, k) for k in ks}
        assert precision_at_k(*args, ks) == pytest.approx(expected, abs=TOL)


def test_pr_curve_matches_naive_at_every_rank(data, tied):
    for args in (data, tied):
        n = len(args[1])
        precision, recall = precision_recall_curve(*args, num_points=n, max_bytes=1)
        expected_p, expected_r = naive_pr_all_ranks(*args)
        np.testing.assert_allclose(precision, expected_p, atol=TOL, rtol=0)
        np.testing.assert_allclose(recall, expected_r, atol=TOL, rtol=0)


def test_pr_curve_has_requested_points_and_ends_at_full_recall(data):
    precision, recall = precision_recall_curve(*data, num_points=7)
    full_p, full_r = naive_pr_all_ranks(*data)
    assert len(precision) == len(recall) == 7
    assert recall[-1] == pytest.approx(1.0, abs=TOL)
    assert precision[0] == pytest.approx(full_p[0], abs=TOL)
    assert precision[-1] == pytest.approx(full_p[-1], abs=TOL)
    assert np.all(np.diff(recall) >= 0)
    assert {round(x, 9) for x in recall} <= {round(x, 9) for x in full_r}


# --- the run bundle -----------------------------------------------------------------------


def test_retrieval_metrics_bundle_matches_the_single_measures(rng):
    image_q, text_q = rng.standard_normal((30, 8)), rng.standard_normal((30, 8))
    image_r, text_r = rng.standard_normal((45, 8)), rng.standard_normal((45, 8))
    lq, lr = multi_label(rng, 30), multi_label(rng, 45)
    out = retrieval_metrics(image_q, text_q, lq, image_r, text_r, lr, ks=(1, 10, 100), map_ks=(5, 100),
                            pr_points=10)
    json.dumps(out)  # plain python types only
    assert out["map_i2t"] == pytest.approx(naive_map(image_q, text_r, lq, lr), abs=TOL)
    assert out["map_t2i"] == pytest.approx(naive_map(text_q, image_r, lq, lr), abs=TOL)
    assert out["map_avg"] == pytest.approx((out["map_i2t"] + out["map_t2i"]) / 2, abs=1e-12)
    assert out["map_i2t@5"] == pytest.approx(naive_map(image_q, text_r, lq, lr, k=5), abs=TOL)
    assert out["p@10_t2i"] == pytest.approx(naive_precision_at_k(text_q, image_r, lq, lr, 10), abs=TOL)
    precision, recall = precision_recall_curve(image_q, text_r, lq, lr, num_points=10)
    assert out["pr_i2t"] == {"precision": pytest.approx(list(precision), abs=1e-12),
                             "recall": pytest.approx(list(recall), abs=1e-12)}
    assert all(type(out[key]) is float for key in out if not key.startswith("pr_") and key != "undefined")


def test_cutoffs_larger_than_the_retrieval_set_are_absent_and_said_so(rng):
    image_q, text_q = rng.standard_normal((30, 8)), rng.standard_normal((30, 8))
    image_r, text_r = rng.standard_normal((45, 8)), rng.standard_normal((45, 8))
    lq, lr = multi_label(rng, 30), multi_label(rng, 45)
    out = retrieval_metrics(image_q, text_q, lq, image_r, text_r, lr, ks=(10, 45, 100), map_ks=(45, 100),
                            pr_points=10)
    for key in ("p@100_i2t", "p@100_t2i", "map_i2t@100", "map_t2i@100"):
        assert key not in out
        assert out["undefined"][key] == "K=100 exceeds the 45 items of the retrieval set"
    assert set(out["undefined"]) == {"p@100_i2t", "p@100_t2i", "map_i2t@100", "map_t2i@100"}
    # K equal to the set size is defined: precision over the whole set
    assert out["p@45_i2t"] == pytest.approx(naive_precision_at_k(image_q, text_r, lq, lr, 45), abs=TOL)
    assert out["map_i2t@45"] == pytest.approx(out["map_i2t"], abs=1e-12)
