"""bench.diagnostics against naive references on constructed data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from bench.diagnostics import (
    LabelAP,
    alignment,
    centroid_distance,
    dominant_label,
    mean_label_ap,
    modality_gap,
    modality_probe_accuracy,
    per_label_ap,
    per_label_difference,
    per_query_ap,
    retrieval_gallery,
    top_k,
    tsne_maps,
    uniformity,
)
from bench.metrics import mean_average_precision


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _gaussian(n: int, d: int, seed: int, shift: np.ndarray | float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def _multilabel(n: int, c: int, seed: int, p: float = 0.3) -> np.ndarray:
    labels = (np.random.default_rng(seed).random((n, c)) < p).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1  # every item carries a label, as the data contract asks
    return labels


# --- modality probe --------------------------------------------------------------------------


def test_probe_is_at_chance_on_identical_distributions():
    acc = modality_probe_accuracy(_gaussian(1000, 4, 0), _gaussian(1000, 4, 1), seed=0)
    assert abs(acc - 0.5) < 0.05  # 2,000 held-out predictions: sd 0.011


def test_probe_is_perfect_on_separated_modalities():
    shift = np.eye(4)[0] * 6.0
    assert modality_probe_accuracy(_gaussian(300, 4, 0, shift), _gaussian(300, 4, 1, -shift)) == 1.0


def test_probe_reaches_the_bayes_accuracy_of_overlapping_modalities():
    # image x1 ~ N(+1, 1), text x1 ~ N(-1, 1): normalising keeps the sign of x1, so the best
    # linear rule (x1 > 0) is still available and its accuracy is Phi(1) = 0.841.
    shift = np.eye(3)[0]
    acc = modality_probe_accuracy(_gaussian(2000, 3, 0, shift), _gaussian(2000, 3, 1, -shift), seed=0)
    assert abs(acc - norm.cdf(1.0)) < 0.025


def test_probe_ignores_norms_because_rows_are_normalised():
    # same directions, text 10x longer: separable by norm, not by direction
    acc = modality_probe_accuracy(_gaussian(1000, 4, 0), 10 * _gaussian(1000, 4, 1))
    assert abs(acc - 0.5) < 0.05


def test_probe_keeps_both_vectors_of_an_item_in_one_fold():
    # identical pairs: whatever the probe learns, it labels x_i and y_i = x_i alike, so exactly
    # one of the two is right when both are held out together
    x = _gaussian(200, 5, 0)
    assert modality_probe_accuracy(x, x.copy(), seed=3) == 0.5


def test_probe_is_deterministic_for_a_seed():
    image, text = _gaussian(300, 6, 0), _gaussian(300, 6, 1, 0.2)
    assert modality_probe_accuracy(image, text, seed=5) == modality_probe_accuracy(image, text, seed=5)


def test_probe_refuses_unpaired_shapes():
    with pytest.raises(ValueError, match="same shape"):
        modality_probe_accuracy(np.ones((10, 3)), np.ones((10, 4)))


# --- centroids, alignment, uniformity ---------------------------------------------------------


def test_centroid_distance_of_orthogonal_modalities_is_sqrt2():
    scales = np.random.default_rng(0).uniform(0.5, 3.0, size=(50, 1))
    image, text = scales * np.eye(3)[0], scales[::-1] * np.eye(3)[1]
    assert centroid_distance(image, text) == pytest.approx(np.sqrt(2), abs=1e-12)


def test_centroid_distance_of_symmetric_modalities_is_zero():
    image = np.vstack([np.eye(3)[0], -np.eye(3)[0]]) * [[2.0], [5.0]]
    text = np.vstack([np.eye(3)[1], -np.eye(3)[1]])
    assert centroid_distance(image, text) == pytest.approx(0.0, abs=1e-12)


def test_centroid_distance_matches_a_direct_computation():
    image, text = _gaussian(40, 5, 0, 0.5), _gaussian(40, 5, 1)
    expected = np.linalg.norm(sum(_unit(image)) / 40 - sum(_unit(text)) / 40)
    assert centroid_distance(image, text) == pytest.approx(expected, rel=1e-12)


def test_alignment_matches_a_loop_over_pairs():
    image, text = _gaussian(30, 4, 0), _gaussian(30, 4, 1)
    for alpha in (1.0, 2.0, 3.0):
        expected = np.mean([np.sum((a / np.linalg.norm(a) - b / np.linalg.norm(b)) ** 2) ** (alpha / 2)
                            for a, b in zip(image, text)])
        assert alignment(image, text, alpha=alpha) == pytest.approx(expected, rel=1e-12)


def test_alignment_of_identical_directions_is_zero():
    x = _gaussian(20, 4, 0)
    assert alignment(x, 3 * x) == pytest.approx(0.0, abs=1e-20)


def _naive_uniformity(x: np.ndarray, t: float) -> float:
    z = _unit(x)
    terms = [np.exp(-t * np.sum((z[i] - z[j]) ** 2)) for i in range(len(z)) for j in range(i + 1, len(z))]
    return float(np.log(np.mean(terms)))


@pytest.mark.parametrize("t", [0.5, 2.0, 7.0])
def test_uniformity_matches_a_double_loop(t):
    x = _gaussian(37, 5, 0, 0.3)
    assert uniformity(x, t=t) == pytest.approx(_naive_uniformity(x, t), rel=1e-10)


def test_uniformity_is_the_same_in_any_chunking():
    x = _gaussian(37, 5, 0)
    assert uniformity(x, chunk=4) == pytest.approx(uniformity(x, chunk=1000), rel=1e-12)


def test_uniformity_of_a_collapsed_modality_is_zero():
    assert uniformity(np.tile([1.0, 2.0, 3.0], (10, 1))) == pytest.approx(0.0, abs=1e-12)


def test_modality_gap_names_every_figure_once():
    gap = modality_gap(_gaussian(50, 4, 0), _gaussian(50, 4, 1), folds=3)
    assert set(gap) == {"diag/probe_acc", "diag/centroid_dist", "diag/align", "diag/uniform_img",
                        "diag/uniform_txt"}
    assert gap["diag/uniform_txt"] == pytest.approx(_naive_uniformity(_gaussian(50, 4, 1), 2.0), rel=1e-10)


# --- per-label AP ----------------------------------------------------------------------------


def _naive_query_ap(q: np.ndarray, r: np.ndarray, lq: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """AP of each query: mean of precision at the ranks of its relevant items (all of them)."""
    aps = []
    for i in range(len(q)):
        order = np.argsort(-(_unit(r) @ _unit(q[i:i + 1]).T)[:, 0], kind="stable")
        relevant = ((lr @ lq[i]) > 0)[order]
        precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
        aps.append(precision[relevant].mean())
    return np.array(aps)


def test_per_label_ap_is_the_map_of_the_queries_carrying_the_label():
    n, c = 60, 6
    labels = _multilabel(n, c, seed=2)
    image, text = _gaussian(n, 5, 0), _gaussian(n, 5, 1)
    result = per_label_ap(image, text, labels)
    ap_i2t = _naive_query_ap(image, text, labels, labels)
    ap_t2i = _naive_query_ap(text, image, labels, labels)
    for label in range(c):
        carriers = labels[:, label] == 1
        assert result.i2t[label] == pytest.approx(ap_i2t[carriers].mean(), abs=1e-6)
        assert result.t2i[label] == pytest.approx(ap_t2i[carriers].mean(), abs=1e-6)
        assert result.count[label] == carriers.sum()
        assert result.frequency[label] == pytest.approx(carriers.mean())


def _tie_heavy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings full of exact ties: entries in {-1, 0, 1} on 3 dims, some rows rescaled copies."""
    rng = np.random.default_rng(seed)
    image, text = rng.integers(-1, 2, (n, 3)).astype(float), rng.integers(-1, 2, (n, 3)).astype(float)
    image[::4] = image[1::4][: len(image[::4])] * rng.uniform(0.1, 9, (len(image[::4]), 1))
    return image, text


def test_per_query_ap_matches_a_naive_loop_query_by_query():
    labels = _multilabel(50, 5, seed=3)
    image, text = _gaussian(50, 4, 0), _gaussian(50, 4, 1)
    assert np.allclose(per_query_ap(image, text, labels, labels), _naive_query_ap(image, text, labels, labels),
                       atol=1e-6)


def test_per_query_ap_averages_to_bench_metrics_map_even_with_ties():
    labels = _multilabel(60, 4, seed=1)
    image, text = _tie_heavy(60, seed=0)
    for q, r in ((image, text), (text, image)):
        ap = per_query_ap(q, r, labels, labels, max_bytes=4096)  # several chunks
        assert np.mean(ap) == pytest.approx(mean_average_precision(q, r, labels, labels), abs=1e-9)


def test_per_query_ap_with_one_relevant_item_and_with_none():
    labels_q = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    labels_r = np.array([[0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]])
    q, r = _gaussian(3, 3, 0), _gaussian(4, 3, 1)
    ap = per_query_ap(q, r, labels_q, labels_r)
    assert np.allclose(ap[:2], _naive_query_ap(q[:2], r, labels_q[:2], labels_r), atol=1e-9)
    assert np.isnan(ap[2])


def test_per_label_ap_equals_bench_metrics_map_of_the_carriers_even_with_ties():
    labels = _multilabel(60, 4, seed=2)
    image, text = _tie_heavy(60, seed=1)
    result = per_label_ap(image, text, labels)
    for label in range(4):
        rows = labels[:, label] == 1
        assert result.i2t[label] == pytest.approx(mean_average_precision(image[rows], text, labels[rows], labels),
                                                  abs=1e-9)
        assert result.t2i[label] == pytest.approx(mean_average_precision(text[rows], image, labels[rows], labels),
                                                  abs=1e-9)


def test_an_item_without_labels_does_not_spoil_the_other_labels():
    labels = _multilabel(30, 3, seed=0)
    labels[5] = 0
    result = per_label_ap(_gaussian(30, 3, 0), _gaussian(30, 3, 1), labels)
    assert np.isfinite(result.i2t).all() and np.isfinite(result.t2i).all()


def test_per_label_ap_of_single_label_data_is_per_class_ap():
    n, c = 45, 3
    classes = np.arange(n) % c
    labels = np.eye(c, dtype=np.uint8)[classes]
    image, text = _gaussian(n, 4, 0, np.eye(4)[classes % 4]), _gaussian(n, 4, 1)
    result = per_label_ap(image, text, labels)
    for k in range(c):
        expected = []
        for i in np.flatnonzero(classes == k):  # relevant = the same class
            order = np.argsort(-(_unit(text) @ _unit(image[i:i + 1]).T)[:, 0], kind="stable")
            hits = classes[order] == k
            expected.append((np.cumsum(hits) / np.arange(1, n + 1))[hits].mean())
        assert result.i2t[k] == pytest.approx(np.mean(expected), abs=1e-6)


def test_a_label_no_item_carries_has_no_ap():
    labels = _multilabel(20, 4, seed=0)
    labels[:, 2] = 0
    result = per_label_ap(_gaussian(20, 3, 0), _gaussian(20, 3, 1), labels)
    assert np.isnan(result.i2t[2]) and np.isnan(result.t2i[2]) and result.count[2] == 0
    assert np.isfinite(np.delete(result.mean, 2)).all()


def test_mean_label_ap_averages_runs_label_by_label_skipping_missing_labels():
    first = LabelAP(i2t=np.array([0.2, np.nan]), t2i=np.array([0.4, 0.5]), count=np.array([3, 0]),
                    frequency=np.array([0.3, 0.0]))
    second = LabelAP(i2t=np.array([0.6, np.nan]), t2i=np.array([0.0, 0.7]), count=np.array([3, 0]),
                     frequency=np.array([0.3, 0.0]))
    mean = mean_label_ap([first, second])
    assert np.allclose(mean.i2t[:1], [0.4]) and np.isnan(mean.i2t[1])
    assert np.allclose(mean.t2i, [0.2, 0.6])


def test_per_label_difference_is_the_mean_of_seed_paired_differences():
    full = {0: np.array([0.5, 0.6, 0.7]), 1: np.array([0.4, 0.6, np.nan]), 2: np.array([0.1, 0.1, 0.1])}
    variant = {0: np.array([0.6, 0.5, 0.7]), 1: np.array([0.7, 0.6, 0.2]), 3: np.array([9.0, 9.0, 9.0])}
    delta = per_label_difference(variant, full)
    assert delta.seeds == (0, 1)
    assert np.allclose(delta.mean, [0.2, -0.05, 0.0])
    assert np.allclose(delta.std[:2], [np.std([0.1, 0.3], ddof=1), np.std([-0.1, 0.0], ddof=1)])
    assert np.isnan(delta.std[2]) and list(delta.pairs) == [2, 2, 1]


def test_per_label_difference_needs_a_shared_seed():
    with pytest.raises(ValueError, match="no seed"):
        per_label_difference({0: np.zeros(3)}, {1: np.zeros(3)})


def test_dominant_label_is_the_most_frequent_of_the_items_own_labels():
    labels = np.array([[1, 1, 0, 0],   # label 1 is the most frequent in the data (4 items)
                       [1, 1, 1, 0],
                       [0, 1, 0, 1],
                       [0, 1, 1, 0],
                       [1, 0, 1, 0],   # labels 0 and 2 both carried by 3 items: the lower index wins
                       [0, 0, 0, 1],
                       [0, 0, 0, 0]])
    assert list(dominant_label(labels)) == [1, 1, 1, 1, 0, 3, -1]


# --- t-SNE and the gallery --------------------------------------------------------------------


def _models(n: int = 80, d: int = 6) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"full": (_gaussian(n, d, 0), _gaussian(n, d, 1)), "no_gan": (_gaussian(n, d, 2, 1.0), _gaussian(n, d, 3))}


def test_tsne_maps_share_one_sample_and_have_one_point_per_vector():
    maps = tsne_maps(_models(), max_items=30, seed=0)
    assert maps.positions.shape == (30,) and len(set(maps.positions.tolist())) == 30
    assert list(maps.coords) == ["full", "no_gan"]
    for image_xy, text_xy in maps.coords.values():
        assert image_xy.shape == (30, 2) and text_xy.shape == (30, 2)
        assert np.isfinite(image_xy).all() and np.isfinite(text_xy).all()


def test_tsne_maps_are_deterministic_for_a_seed():
    first, again = tsne_maps(_models(), max_items=30, seed=4), tsne_maps(_models(), max_items=30, seed=4)
    assert np.array_equal(first.positions, again.positions)
    assert np.array_equal(first.coords["no_gan"][0], again.coords["no_gan"][0])
    other = tsne_maps(_models(), max_items=30, seed=5)
    assert not np.array_equal(first.positions, other.positions)


def test_tsne_maps_do_not_depend_on_the_thread_count():
    one, default = tsne_maps(_models(), max_items=30, threads=1), tsne_maps(_models(), max_items=30, threads=None)
    assert np.array_equal(one.coords["full"][1], default.coords["full"][1])


def test_tsne_maps_refuse_models_of_different_samples():
    models = _models()
    models["short"] = (_gaussian(10, 6, 0), _gaussian(10, 6, 1))
    with pytest.raises(ValueError, match="same items"):
        tsne_maps(models)


def test_top_k_is_the_head_of_a_naive_cosine_ranking():
    q, r = _gaussian(4, 5, 0), _gaussian(30, 5, 1)
    naive = np.array([np.argsort(-(_unit(r) @ _unit(q)[i]), kind="stable")[:5] for i in range(4)])
    assert np.array_equal(top_k(q, r, 5), naive)


def test_top_k_breaks_ties_by_lower_index_even_through_rounding_noise():
    # 20 rows point exactly along the query at random lengths: their cosines are 1 in exact
    # arithmetic but differ in the last bits once computed; all tie, so the lowest indices win
    rng = np.random.default_rng(0)
    query, r = rng.normal(size=(1, 6)), rng.normal(size=(200, 6))
    copies = np.sort(rng.choice(200, 20, replace=False))
    r[copies] = query * rng.uniform(0.1, 10, size=(20, 1))
    assert list(top_k(query, r, 5)[0]) == list(copies[:5])


def test_gallery_flags_relevance_and_pairs_and_maps_previews_to_item_ids():
    n = 40
    labels = _multilabel(n, 5, seed=1)
    models = _models(n)
    items = np.arange(n) + 1000
    asked = []
    gallery = retrieval_gallery(models, labels, queries=3, k=5, seed=2, items=items,
                                preview=lambda i: asked.append(i) or {"text": f"item {i}"})
    assert [g.direction for g in gallery] == ["t2i"] * 3 + ["i2t"] * 3
    assert [g.position for g in gallery[:3]] == [g.position for g in gallery[3:]]
    for query in gallery:
        assert query.item == query.position + 1000 and query.preview == {"text": f"item {query.item}"}
        assert query.labels == tuple(np.flatnonzero(labels[query.position]))
        for name, hits in query.hits.items():
            image, text = models[name]
            q, r = (text, image) if query.direction == "t2i" else (image, text)
            assert [h.position for h in hits] == list(top_k(q[query.position:query.position + 1], r, 5)[0])
            for hit in hits:
                assert hit.relevant == bool(labels[hit.position] @ labels[query.position])
                assert hit.paired == (hit.position == query.position)
                assert hit.item == hit.position + 1000
    assert len(asked) == len(set(asked))  # one preview call per item shown


def test_gallery_without_preview_has_none():
    gallery = retrieval_gallery(_models(20), _multilabel(20, 3, seed=0), queries=2)
    assert all(q.preview is None and all(h.preview is None for hs in q.hits.values() for h in hs) for q in gallery)


def test_gallery_queries_have_distinct_previews_when_the_collection_holds_copies():
    # 40 items whose previews come in 4 titles of 10 copies each: three queries, three titles
    n = 40
    gallery = retrieval_gallery(_models(n), _multilabel(n, 5, seed=1), queries=3, k=2, seed=0,
                                preview=lambda i: {"text": f"title {i % 4}"})
    titles = [q.preview["text"] for q in gallery if q.direction == "t2i"]
    assert len(titles) == 3 and len(set(titles)) == 3
    # with fewer distinct previews than queries it shows what there is, each once
    few = retrieval_gallery(_models(n), _multilabel(n, 5, seed=1), queries=3, k=2, seed=0,
                            preview=lambda i: {"text": f"title {i % 2}"})
    assert sorted(q.preview["text"] for q in few if q.direction == "t2i") == ["title 0", "title 1"]


def test_gallery_queries_do_not_repeat_a_title_under_different_images():
    n = 40  # every item its own image, but only 4 titles
    gallery = retrieval_gallery(_models(n), _multilabel(n, 5, seed=1), queries=3, k=2, seed=0,
                                preview=lambda i: {"text": f"title {i % 4}", "image": f"/img/{i}.png"})
    titles = [q.preview["text"] for q in gallery if q.direction == "t2i"]
    assert len(set(titles)) == 3
