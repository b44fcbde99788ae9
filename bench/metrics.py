"""Retrieval metrics: mAP (@all and @k), precision@K and the precision-recall curve.

Vectorised in torch (CPU or GPU) and chunked over queries so memory stays bounded.
Conventions shared by every measure:

- similarity is cosine: rows are L2-normalised (a zero row stays zero, so it ties with
  everything at similarity 0);
- item j is relevant to query i when they share at least one label
  (``labels_q @ labels_r.T > 0``);
- items are ranked by descending similarity, ties broken by retrieval index ascending
  (the order of ``np.argsort(-s, kind="stable")``) at every cut-off. Similarities are
  computed in float64 and rounded to multiples of 2**-36 before ranking, so items whose
  cosines are equal in exact arithmetic (duplicates, permuted or mirrored vectors) tie even
  when rounding makes their computed values differ in the last bits (float32 on MPS, 2**-20);
- hit counts are float32 and sums float64.

Every measure is read off one ranking pass: per chunk of queries, the similarities are
sorted once and the relevance matrix is gathered into rank order (``_ranked_relevance``);
``_chunk_sums`` turns that into the sums all the measures need.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = np.ndarray | torch.Tensor

DEFAULT_MAX_BYTES = 256 * 2**20
# Peak working memory of one chunk, in bytes per (query, item) pair: the float64
# similarities, the sort's float64 values and int64 indices live together (24 B); later the
# rank-ordered relevance (1 B) and its float32 cumulative sum (4 B) plus reduction temporaries.
_BYTES_PER_PAIR = 32
# Similarities are rounded to multiples of 1/_TIE_GRID before ranking (see the module docstring).
_TIE_GRID = 2.0**36
_TIE_GRID_FLOAT32 = 2.0**20
_EPS = 1e-12


@dataclass(frozen=True)
class _Means:
    """Means over queries: mAP per cutoff, P@k per cutoff, the PR curve."""

    ap: dict[int, float]
    precision: dict[int, float]
    pr_precision: np.ndarray
    pr_recall: np.ndarray


def mean_average_precision(query: ArrayLike, retrieval: ArrayLike, query_labels: ArrayLike,
                           retrieval_labels: ArrayLike, k: int | None = None, *,
                           device: str | torch.device | None = None,
                           max_bytes: int = DEFAULT_MAX_BYTES) -> float:
    """mAP: mean over queries of AP = sum over relevant ranks r <= k of P@r, divided by the
    number of relevant items (k=None: in the whole set; k given: found in the top k).

    Queries with no relevant item in the whole retrieval set are left out of the mean; with
    k, a query whose relevant items all rank below k has AP 0 and counts. k is clipped to
    the retrieval size (so k >= N equals mAP@all). Raises ValueError if no query has a
    relevant item.
    """
    n = _num_items(retrieval)
    cutoff = n if k is None else _clip(k, n, "k")
    means = _evaluate(query, retrieval, query_labels, retrieval_labels, map_ks=(cutoff,),
                      device=device, max_bytes=max_bytes)
    return means.ap[cutoff]


def precision_at_k(query: ArrayLike, retrieval: ArrayLike, query_labels: ArrayLike,
                   retrieval_labels: ArrayLike, ks: Sequence[int], *,
                   device: str | torch.device | None = None,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> dict[int, float]:
    """P@k: mean over all queries of (relevant items in the top k) / k, k clipped to N; keyed by the k asked."""
    n = _num_items(retrieval)
    clipped = {k: _clip(k, n, "ks") for k in ks}
    means = _evaluate(query, retrieval, query_labels, retrieval_labels,
                      p_ks=tuple(sorted(set(clipped.values()))), device=device, max_bytes=max_bytes)
    return {k: means.precision[c] for k, c in clipped.items()}


def precision_recall_curve(query: ArrayLike, retrieval: ArrayLike, query_labels: ArrayLike,
                           retrieval_labels: ArrayLike, num_points: int = 100, *,
                           device: str | torch.device | None = None,
                           max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at rank cutoffs K, averaged over queries with a relevant item.

    The cutoffs are ``num_points`` distinct ranks spaced evenly over 1..N (all N ranks when
    N <= num_points), in increasing order, always including N (and 1 when num_points > 1). At cutoff K, a query's
    precision is (relevant in top K) / K and its recall is (relevant in top K) / (relevant
    in all N); both are averaged over the queries that have at least one relevant item, so
    the last point has recall 1. Returns (precision, recall), float64 arrays of equal length.
    Raises ValueError if no query has a relevant item.
    """
    if num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    cutoffs = rank_cutoffs(_num_items(retrieval), num_points)
    means = _evaluate(query, retrieval, query_labels, retrieval_labels, cutoffs=cutoffs,
                      device=device, max_bytes=max_bytes)
    return means.pr_precision, means.pr_recall


def retrieval_metrics(image_q: ArrayLike, text_q: ArrayLike, labels_q: ArrayLike,
                      image_r: ArrayLike, text_r: ArrayLike, labels_r: ArrayLike, *,
                      ks: Sequence[int] = (1, 10, 50, 100, 500, 1000),
                      map_ks: Sequence[int] = (100,), pr_points: int = 100,
                      device: str | torch.device | None = None,
                      max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """The metrics a run reports, for image->text (i2t) and text->image (t2i) retrieval in a common space.

    Keys: ``map_i2t``, ``map_t2i``, ``map_avg`` (mAP@all and their mean), ``map_i2t@{k}``
    and ``map_t2i@{k}`` for k in ``map_ks``, ``p@{k}_i2t`` and ``p@{k}_t2i`` for k in
    ``ks``, and ``pr_i2t``, ``pr_t2i`` as ``{"precision": [...], "recall": [...]}``. A cutoff
    k larger than the retrieval set is undefined there (it is not the whole-set figure): its
    keys are absent and ``undefined`` maps each absent key to the reason. Scalars are python
    floats. One ranking pass per direction serves all of them.
    """
    n_text, n_image = _num_items(text_r), _num_items(image_r)
    out: dict = {}
    undefined: dict[str, str] = {}
    for name, query, retrieval, n in (("i2t", image_q, text_r, n_text), ("t2i", text_q, image_r, n_image)):
        map_clip = {k: _clip(k, n, "map_ks") for k in map_ks}
        p_clip = {k: _clip(k, n, "ks") for k in ks}
        for k in (*map_ks, *ks):
            if k > n:
                why = f"K={k} exceeds the {n} items of the retrieval set"
                undefined.update({f"map_{name}@{k}": why} if k in map_ks else {})
                undefined.update({f"p@{k}_{name}": why} if k in ks else {})
        means = _evaluate(query, retrieval, labels_q, labels_r,
                          map_ks=tuple(sorted({n, *map_clip.values()})),
                          p_ks=tuple(sorted(set(p_clip.values()))),
                          cutoffs=rank_cutoffs(n, pr_points), device=device, max_bytes=max_bytes)
        out[f"map_{name}"] = means.ap[n]
        out.update({f"map_{name}@{k}": means.ap[c] for k, c in map_clip.items() if k <= n})
        out.update({f"p@{k}_{name}": means.precision[c] for k, c in p_clip.items() if k <= n})
        out[f"pr_{name}"] = {"precision": means.pr_precision.tolist(), "recall": means.pr_recall.tolist()}
    out["map_avg"] = (out["map_i2t"] + out["map_t2i"]) / 2
    if undefined:
        out["undefined"] = undefined
    return out


# --- the shared ranking pass -------------------------------------------------------------


def _evaluate(query: ArrayLike, retrieval: ArrayLike, query_labels: ArrayLike,
              retrieval_labels: ArrayLike, *, map_ks: Sequence[int] = (), p_ks: Sequence[int] = (),
              cutoffs: np.ndarray | None = None, device: str | torch.device | None = None,
              max_bytes: int = DEFAULT_MAX_BYTES) -> _Means:
    """Rank once per chunk and average the requested measures (cutoffs already clipped to N)."""
    q, r, lq, lr = _prepare(query, retrieval, query_labels, retrieval_labels, device)
    cutoffs = np.zeros(0, dtype=np.int64) if cutoffs is None else cutoffs
    totals: dict[str, torch.Tensor] | None = None
    for ranked in _ranked_relevance(q, r, lq, lr, max_bytes):
        sums = _chunk_sums(ranked, map_ks, p_ks, torch.as_tensor(cutoffs, device=ranked.device))
        totals = sums if totals is None else {key: totals[key] + sums[key] for key in sums}
    if totals is None:
        raise ValueError("query is empty: at least one query row is needed")
    n_valid, n_all = totals["with_relevant"].item(), totals["queries"].item()
    if n_valid == 0 and (len(map_ks) or len(cutoffs)):
        raise ValueError("no query has a relevant item in the retrieval set (no shared label), "
                         "so mAP and the PR curve are undefined; check the labels")
    per_valid = 1 / max(n_valid, 1)
    return _Means(
        ap={k: s * per_valid for k, s in zip(map_ks, totals["ap"].tolist())},
        precision={k: s / n_all for k, s in zip(p_ks, totals["precision"].tolist())},
        pr_precision=totals["pr_precision"].cpu().numpy() * per_valid,
        pr_recall=totals["pr_recall"].cpu().numpy() * per_valid,
    )


def _ranked_relevance(q: torch.Tensor, r: torch.Tensor, lq: torch.Tensor, lr: torch.Tensor,
                      max_bytes: int) -> Iterator[torch.Tensor]:
    """Yield, per chunk of queries, the (chunk, N) bool relevance matrix in rank order."""
    dtype, grid = (torch.float32, _TIE_GRID_FLOAT32) if r.device.type == "mps" else (torch.float64, _TIE_GRID)
    r = F.normalize(r.to(dtype), dim=1, eps=_EPS)
    step = _chunk_size(r.shape[0], max_bytes)
    for start in range(0, q.shape[0], step):
        sims = F.normalize(q[start:start + step].to(dtype), dim=1, eps=_EPS) @ r.T
        sims.mul_(grid).round_()  # ties up to rounding noise become exact ties, broken by index below
        order = torch.sort(sims, dim=1, descending=True, stable=True).indices
        del sims  # free before the relevance matrix is built: it bounds the chunk's peak
        relevant = (lq[start:start + step] @ lr.T) > 0
        ranked = relevant.gather(1, order)
        del order, relevant
        yield ranked


def _chunk_sums(ranked: torch.Tensor, map_ks: Sequence[int], p_ks: Sequence[int],
                cutoffs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-chunk float64 sums behind every measure, from the rank-ordered relevance matrix."""
    n_relevant = ranked.sum(1)
    valid = n_relevant > 0
    hits = ranked.cumsum(1, dtype=torch.float32)  # exact integers up to 2**24 items
    # Read the hit counts first: the AP step below reuses this buffer in place.
    map_ks_t, p_ks_t = (torch.as_tensor(ks, dtype=torch.long, device=ranked.device) for ks in (map_ks, p_ks))
    found_at_k = hits[:, map_ks_t - 1].double()
    hits_at_cut = hits[:, cutoffs - 1][valid].double()
    precision_sum = (hits[:, p_ks_t - 1].double() / p_ks_t).sum(0)
    ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float32, device=hits.device)
    precision_at_hit = hits.div_(ranks).mul_(ranked)
    ap_sums = [(precision_at_hit[:, :k].sum(1, dtype=torch.float64) / found_at_k[:, i].clamp(min=1))[valid].sum()
               for i, k in enumerate(map_ks)]
    f64 = dict(dtype=torch.float64, device=ranked.device)
    return {
        "queries": torch.tensor(ranked.shape[0], **f64),
        "with_relevant": valid.sum().double(),
        "ap": torch.stack(ap_sums) if ap_sums else torch.zeros(0, **f64),
        "precision": precision_sum,
        "pr_precision": (hits_at_cut / cutoffs).sum(0),
        "pr_recall": (hits_at_cut / n_relevant[valid, None]).sum(0),
    }


# --- inputs and small helpers ------------------------------------------------------------


def _prepare(query: ArrayLike, retrieval: ArrayLike, query_labels: ArrayLike, retrieval_labels: ArrayLike,
             device: str | torch.device | None) -> tuple[torch.Tensor, ...]:
    """Validate shapes and return float32 tensors on the chosen device."""
    if device is None:
        device = next((x.device for x in (query, retrieval, query_labels, retrieval_labels)
                       if isinstance(x, torch.Tensor)), torch.device("cpu"))
    names = ("query", "retrieval", "query_labels", "retrieval_labels")
    q, r, lq, lr = (_as_matrix(x, name, device)
                    for x, name in zip((query, retrieval, query_labels, retrieval_labels), names))
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"query and retrieval embeddings differ in width: {q.shape[1]} vs {r.shape[1]}")
    if lq.shape[1] != lr.shape[1]:
        raise ValueError(f"query_labels and retrieval_labels differ in label count: {lq.shape[1]} vs {lr.shape[1]}")
    for emb, lab, side in ((q, lq, "query"), (r, lr, "retrieval")):
        if emb.shape[0] != lab.shape[0]:
            raise ValueError(f"{side} has {emb.shape[0]} rows but {side}_labels has {lab.shape[0]}")
    if r.shape[0] == 0:
        raise ValueError("the retrieval set is empty")
    return q, r, lq, lr


def _as_matrix(x: ArrayLike, name: str, device: str | torch.device) -> torch.Tensor:
    """A 2-D float32 tensor on device (no copy when x already is one)."""
    t = torch.as_tensor(x, dtype=torch.float32, device=device)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, columns), got shape {tuple(t.shape)}")
    return t


def _num_items(retrieval: ArrayLike) -> int:
    """Number of rows of the retrieval set."""
    return int(retrieval.shape[0])


def _clip(k: int, n: int, name: str) -> int:
    """k clipped to the retrieval size n, after checking it is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must hold positive integers, got {k!r}")
    return min(int(k), n)


def _chunk_size(n_items: int, max_bytes: int) -> int:
    """Queries per chunk so one chunk's working memory stays within max_bytes (at least 1)."""
    return max(1, max_bytes // (_BYTES_PER_PAIR * max(n_items, 1)))


def rank_cutoffs(n_items: int, num_points: int) -> np.ndarray:
    """min(num_points, n_items) distinct ranks evenly spaced over 1..n_items, always including n_items
    (and 1 when num_points > 1): the cutoffs K of the stored PR curves (the report draws P@K from them)."""
    if num_points == 1:
        return np.array([n_items], dtype=np.int64)
    return np.unique(np.linspace(1, n_items, min(num_points, n_items)).round().astype(np.int64))
