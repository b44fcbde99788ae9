"""Diagnostics that explain an ablation, computed from saved test embeddings (`bench.embeddings`).

Conventions shared by every function:

- **Geometry.** Retrieval ranks by cosine similarity, so every diagnostic first L2-normalises
  each embedding row (a zero row stays zero, as in `bench.metrics`). A common positive scale of
  the embeddings therefore changes nothing, and the file's float16 scale factor is irrelevant.
- **Pairs.** Row i of `image` and row i of `text` are the two modalities of the same item.
- **Relevance.** Item j is relevant to query i when they share a label (as in `bench.metrics`).
- **Samples.** Everything is measured on the saved sample of test items (at most
  `bench.embeddings.EMBEDDINGS_MAX`): the retrieval set of the per-label AP is that sample, so its
  values are comparable between runs that saved the same sample, not to the run's mAP on the
  whole test split.
- **Seeds.** Every random choice (probe folds, t-SNE, sampled items, gallery queries) takes an
  explicit seed; the same seed gives the same result.

The dataset hook for the retrieval gallery (optional; the lead adds it to `bench.dataset.Dataset`):

    def preview(self, i: int) -> dict[str, str] | None:
        '''What item i (a row of the loaded data) looks like: {"image": path to a PNG/JPEG file,
        "text": its title / caption}, either key optional; None when the raw content is absent.'''

Datasets shipped as feature packs define none; a user with the raw images adds it in a subclass.
`retrieval_gallery` takes any callable with that signature, so it never touches a dataset.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

Embeddings = tuple[np.ndarray, np.ndarray]  # (image, text) rows of the same items
# Working-memory budget of one ranking chunk: smaller than bench.metrics' default (256 MiB), since
# a report ranks small samples, where chunk size barely changes the speed.
RANKING_MAX_BYTES = 64 * 2**20
Preview = Callable[[int], "Mapping[str, str] | None"]

# Similarities are rounded to this grid before ranking, as bench.metrics does, so the gallery
# breaks ties (by item position) exactly as the mAP does.
_TIE_GRID = 2.0**36
_EPS = 1e-12


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, in float64; a zero row stays zero."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


def _pair(image: np.ndarray, text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both modalities normalised, after checking they describe the same items in one space."""
    image, text = np.asarray(image), np.asarray(text)
    if image.ndim != 2 or text.ndim != 2:
        raise ValueError(f"image and text must be 2-D (items, dims), got {image.shape} and {text.shape}")
    if image.shape != text.shape:
        raise ValueError(f"image and text must have the same shape (paired items, one common space), "
                         f"got {image.shape} and {text.shape}")
    if image.shape[0] < 2:
        raise ValueError(f"at least 2 items are needed, got {image.shape[0]}")
    return l2_normalise(image), l2_normalise(text)


# --- the modality gap ---------------------------------------------------------------------


def modality_probe_accuracy(image: np.ndarray, text: np.ndarray, *, folds: int = 5, seed: int = 0,
                            C: float = 1.0) -> float:
    """Cross-validated accuracy of a logistic-regression probe telling image rows from text rows.

    Rows are L2-normalised first (retrieval is cosine: the probe should find a gap that the
    ranking sees, not a difference of norms). The items are shuffled with `seed` and split into
    `folds` folds; a fold's test set holds both modalities of its items, so every test set is
    exactly balanced and an item's two vectors never sit on both sides of a split. The result is
    the pooled accuracy over all 2n held-out predictions: 0.5 means the modalities cannot be told
    apart linearly (a modality-invariant space), 1.0 that a hyperplane separates them.
    `C` is scikit-learn's inverse L2 penalty. A probe that stops before lbfgs converges still
    gives a valid held-out accuracy (a lower bound on separability), so that warning is muted.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    z_img, z_txt = _pair(image, text)
    n = z_img.shape[0]
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be between 2 and the number of items ({n}), got {folds}")
    correct = 0
    for train, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(z_img):
        x_train = np.vstack([z_img[train], z_txt[train]])
        y_train = np.repeat([0, 1], len(train))
        probe = LogisticRegression(C=C, max_iter=1000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            probe.fit(x_train, y_train)
        correct += int((probe.predict(z_img[test]) == 0).sum() + (probe.predict(z_txt[test]) == 1).sum())
    return correct / (2 * n)


def centroid_distance(image: np.ndarray, text: np.ndarray) -> float:
    """Euclidean distance between the mean image row and the mean text row, after L2-normalising
    every row: 0 when the modalities share a centre, at most 2 (opposite unit centroids)."""
    z_img, z_txt = _pair(image, text)
    return float(np.linalg.norm(z_img.mean(0) - z_txt.mean(0)))


def alignment(image: np.ndarray, text: np.ndarray, alpha: float = 2.0) -> float:
    """Alignment (Wang and Isola, ICML 2020) of paired items: mean over items i of
    ||f(x_i) - g(y_i)||_2 ** alpha on L2-normalised rows; 0 = pairs coincide, 4 = opposite (alpha 2)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    z_img, z_txt = _pair(image, text)
    return float(np.mean(np.linalg.norm(z_img - z_txt, axis=1) ** alpha))


def uniformity(x: np.ndarray, t: float = 2.0, *, chunk: int = 1024) -> float:
    """Uniformity (Wang and Isola, ICML 2020) of one modality: log of the mean over distinct pairs
    i < j of exp(-t ||z_i - z_j||^2), z the L2-normalised rows. Lower = spread more evenly over the
    sphere; 0 = all rows identical. Computed in row chunks of `chunk` (memory O(chunk * n))."""
    if t <= 0:
        raise ValueError(f"t must be positive, got {t}")
    if np.ndim(x) != 2 or np.shape(x)[0] < 2:
        raise ValueError(f"uniformity needs a 2-D array of at least 2 rows, got shape {np.shape(x)}")
    z = l2_normalise(x)
    n = z.shape[0]
    squared = (z * z).sum(1)
    parts = []
    for start in range(0, n - 1, chunk):
        stop = min(start + chunk, n)
        d2 = np.maximum(squared[start:stop, None] + squared[None, :] - 2 * z[start:stop] @ z.T, 0.0)
        upper = np.arange(n)[None, :] > np.arange(start, stop)[:, None]  # each pair once
        parts.append(logsumexp(-t * d2[upper]))
    return float(logsumexp(parts) - np.log(n * (n - 1) / 2))


def modality_gap(image: np.ndarray, text: np.ndarray, *, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Every modality-gap figure of one run, keyed by its metric name: ``diag/probe_acc``,
    ``diag/centroid_dist``, ``diag/align`` (alpha 2), ``diag/uniform_img``, ``diag/uniform_txt`` (t 2)."""
    return {
        "diag/probe_acc": modality_probe_accuracy(image, text, folds=folds, seed=seed),
        "diag/centroid_dist": centroid_distance(image, text),
        "diag/align": alignment(image, text),
        "diag/uniform_img": uniformity(image),
        "diag/uniform_txt": uniformity(text),
    }


# --- per-label retrieval quality ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LabelAP:
    """Per-label AP of one run: arrays of length c (NaN where no sampled item carries the label)."""

    i2t: np.ndarray
    t2i: np.ndarray
    count: np.ndarray
    frequency: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """The two directions averaged, per label."""
        return (self.i2t + self.t2i) / 2


def per_query_ap(query: np.ndarray, retrieval: np.ndarray, query_labels: np.ndarray,
                 retrieval_labels: np.ndarray, *, max_bytes: int = RANKING_MAX_BYTES) -> np.ndarray:
    """AP@all of each query (float64, (q,)), NaN for a query with no relevant item.

    The ranking and AP are `bench.metrics`' (its mean over the non-NaN queries is
    `mean_average_precision`, which the tests check, ties included): cosine in float64 rounded to
    2**-36, stable descending sort (ties by lower index), AP = sum of precision at the relevant
    ranks over the number of relevant items. bench.metrics returns only the mean; this keeps the
    per-query values, so per-label means cost one ranking pass per direction instead of one per
    label (10x faster at 2,000 items and 80 labels). Torch on CPU, chunked under `max_bytes`.
    """
    import torch

    r = torch.as_tensor(l2_normalise(retrieval))
    lr = torch.as_tensor(np.asarray(retrieval_labels, dtype=np.float32))
    n = r.shape[0]
    ranks = torch.arange(1, n + 1, dtype=torch.float32)
    step = max(1, max_bytes // (32 * max(n, 1)))  # 32 B per (query, item): bench.metrics' budget
    out = []
    for start in range(0, len(query), step):
        sims = torch.as_tensor(l2_normalise(query[start:start + step])) @ r.T
        order = torch.sort(sims.mul_(_TIE_GRID).round_(), dim=1, descending=True, stable=True).indices
        del sims
        lq = torch.as_tensor(np.asarray(query_labels[start:start + step], dtype=np.float32))
        relevant = ((lq @ lr.T) > 0).gather(1, order)
        del order
        precision_at_hit = relevant.cumsum(1, dtype=torch.float32).div_(ranks).mul_(relevant)
        found = relevant.sum(1)
        ap = precision_at_hit.sum(1, dtype=torch.float64) / found.clamp(min=1)
        out.append(torch.where(found > 0, ap, torch.nan).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def per_label_ap(image: np.ndarray, text: np.ndarray, labels: np.ndarray, *,
                 max_bytes: int = RANKING_MAX_BYTES) -> LabelAP:
    """AP per label: for label l, the mAP@all of the queries that carry l (what
    `bench.metrics.mean_average_precision` gives for those queries), retrieving from all items of
    the other modality; relevance is the usual "shares any label", not only l. ``i2t`` uses image
    queries, ``t2i`` text queries. ``count`` is the number of items carrying l, ``frequency`` that
    count over the number of items; a label no item carries has NaN AP. With one label per item
    this is the AP per class. Every carrier has a relevant item (its own pair), so none is left
    out of its label's mean.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] != np.shape(image)[0]:
        raise ValueError(f"labels must be (items, labels) with one row per item, got {labels.shape}")
    image, text = np.asarray(image), np.asarray(text)
    carriers = (labels > 0).astype(np.float64)
    count = carriers.sum(0).astype(np.int64)
    # Only an item with no label has a NaN AP (a carrier finds at least its pair); zero it so that
    # 0 * NaN does not spread to every label. 0/0 then leaves NaN for a label nobody carries.
    with np.errstate(invalid="ignore", divide="ignore"):
        i2t, t2i = (carriers.T @ np.nan_to_num(per_query_ap(q, r, labels, labels, max_bytes=max_bytes)) / count
                    for q, r in ((image, text), (text, image)))
    return LabelAP(i2t=i2t, t2i=t2i, count=count, frequency=count / labels.shape[0])


def mean_label_ap(runs: Sequence[LabelAP]) -> LabelAP:
    """Per-label AP averaged over runs (seeds) of one method, label by label, skipping NaN; the
    counts and frequencies are the first run's (runs sharing a saved sample have the same)."""
    if not runs:
        raise ValueError("mean_label_ap needs at least one run")
    with warnings.catch_warnings():  # a label no run's sample carries stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        i2t, t2i = (np.nanmean([getattr(r, side) for r in runs], axis=0) for side in ("i2t", "t2i"))
    return LabelAP(i2t=i2t, t2i=t2i, count=runs[0].count, frequency=runs[0].frequency)


@dataclass(frozen=True, eq=False)
class LabelDelta:
    """Per-label difference variant - full, over seeds: arrays of length c."""

    mean: np.ndarray
    std: np.ndarray
    pairs: np.ndarray
    seeds: tuple[int, ...]


def per_label_difference(variant: Mapping[int, np.ndarray], full: Mapping[int, np.ndarray]) -> LabelDelta:
    """Seed-paired per-label difference of a variant to its full model.

    `variant` and `full` map a seed to that run's per-label values (e.g. ``LabelAP.mean``). For
    each seed run by both, d_s = variant_s - full_s per label; ``mean`` is the mean of d_s over
    those seeds, ``std`` their sample standard deviation (ddof 1; NaN with fewer than 2), ``pairs``
    how many seeds entered each label (a NaN value, a label absent from that run's sample, leaves
    that seed out for that label). Positive = the variant is better on the label. Raises
    ValueError when no seed is shared or the label counts differ.
    """
    seeds = tuple(sorted(set(variant) & set(full)))
    if not seeds:
        raise ValueError(f"no seed run by both the variant ({sorted(variant)}) and the full model ({sorted(full)})")
    diffs = np.array([np.asarray(variant[s], float) - np.asarray(full[s], float) for s in seeds])
    if diffs.ndim != 2:
        raise ValueError("per-label values of every seed must be 1-D arrays of the same length")
    pairs = np.isfinite(diffs).sum(0)
    with warnings.catch_warnings():  # labels with no finite pair are NaN by design
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(diffs, axis=0)
        std = np.where(pairs >= 2, np.nanstd(diffs, axis=0, ddof=1), np.nan)
    return LabelDelta(mean=mean, std=std, pairs=pairs, seeds=seeds)


def dominant_label(labels: np.ndarray) -> np.ndarray:
    """Per item, the label that is most frequent in `labels` (the whole array given) among the
    item's own labels; ties go to the lower label index; -1 for an item with no label."""
    labels = np.asarray(labels) > 0
    count = labels.sum(0)
    score = np.where(labels, count[None, :], -1)
    return np.where(labels.any(1), score.argmax(1), -1)


# --- pictures: t-SNE and the retrieval gallery ---------------------------------------------


@dataclass(frozen=True, eq=False)
class TsneMaps:
    """t-SNE maps of several models on one sample: `positions` (m,) in the saved sample, and per
    model (image coordinates (m, 2), text coordinates (m, 2)), in the order the models were given."""

    positions: np.ndarray
    coords: dict[str, tuple[np.ndarray, np.ndarray]]


def tsne_maps(models: Mapping[str, Embeddings], *, max_items: int = 500, seed: int = 0,
              perplexity: float = 30.0, threads: int | None = 1) -> TsneMaps:
    """2-D t-SNE (scikit-learn, Barnes-Hut, PCA init, `random_state=seed`) of each model's common
    space: the same seeded sample of at most `max_items` items for every model, both modalities
    embedded together (2m points) from their L2-normalised rows (Euclidean distance on the sphere
    is monotone in cosine). Each model gets its own map: spaces of different models are not
    comparable point by point, only in shape. Perplexity is capped below the number of points.
    `threads` caps scikit-learn's OpenMP threads (None: its default, all cores). The default is 1:
    on a busy machine (a report beside a running sweep) spinning OpenMP threads made 1,000 points
    take 31 s instead of 5 s on 2 cores; the maps are the same either way.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    from bench.embeddings import sample_indices

    if not models:
        raise ValueError("tsne_maps needs at least one model")
    sizes = {name: np.shape(image)[0] for name, (image, _) in models.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every model must hold the same items (same saved sample), got row counts {sizes}")
    positions = sample_indices(next(iter(sizes.values())), max_items, seed)
    m = len(positions)
    coords = {}
    for name, (image, text) in models.items():
        z_img, z_txt = _pair(np.asarray(image)[positions], np.asarray(text)[positions])
        tsne = TSNE(n_components=2, perplexity=min(perplexity, (2 * m - 1) / 3), init="pca", random_state=seed)
        with threadpool_limits(limits=threads, user_api="openmp"):
            xy = tsne.fit_transform(np.vstack([z_img, z_txt]))
        coords[name] = (xy[:m], xy[m:])
    return TsneMaps(positions=positions, coords=coords)


@dataclass(frozen=True)
class GalleryHit:
    """One retrieved item: its position in the sample, its id for `preview`, whether it shares a
    label with the query, whether it is the query's own pair, and its preview (None without one)."""

    position: int
    item: int
    relevant: bool
    paired: bool
    preview: Mapping[str, str] | None


@dataclass(frozen=True)
class GalleryQuery:
    """One query of the gallery and each model's top k (in rank order)."""

    direction: str  # "t2i": a text query, images retrieved; "i2t": the reverse
    position: int
    item: int
    labels: tuple[int, ...]
    preview: Mapping[str, str] | None
    hits: dict[str, tuple[GalleryHit, ...]]


def top_k(query: np.ndarray, retrieval: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k retrieval rows most cosine-similar to each query row, best first, ties
    broken by lower index after rounding to 2**-36 (the ranking `bench.metrics` scores)."""
    sims = np.round(l2_normalise(query) @ l2_normalise(retrieval).T * _TIE_GRID)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def _distinct_queries(order: np.ndarray, queries: int,
                      look: Callable[[int], Mapping[str, str] | None]) -> np.ndarray:
    """The first `queries` positions of `order` whose preview shares no part (its text, its image)
    with those already taken (a position without a preview is always new); at most 20 candidates a
    query are looked at, so a collection of copies costs bounded preview calls and then takes what
    it has."""
    taken: list[int] = []
    shown: set[tuple[str, str]] = set()
    for position in order[:20 * queries]:
        parts = set((look(int(position)) or {}).items())
        if not parts & shown:
            taken.append(int(position))
            shown |= parts
        if len(taken) == queries:
            break
    return np.array(taken, dtype=np.int64)


def retrieval_gallery(models: Mapping[str, Embeddings], labels: np.ndarray, *, queries: int = 3, k: int = 5,
                      seed: int = 0, items: np.ndarray | None = None,
                      preview: Preview | None = None) -> list[GalleryQuery]:
    """The data of a retrieval gallery: `queries` seeded items, each asked by its text (t2i, images
    retrieved) and then by its image (i2t), with each model's top `k` from all items of the sample.

    The query items are the first `queries` of a seeded permutation of the sample (the same for every
    model) whose previews share no text and no image with the queries already chosen: real collections
    hold near copies (one author's series of clip art under one title), and a gallery showing one
    query twice tells nothing new. The query's own pair is retrieved too, as in the mAP protocol,
    and flagged ``paired``. `items` maps sample positions to the ids `preview` expects (dataset
    rows; default: the positions).
    `preview` (see the module docstring) is called once per distinct item shown; None leaves every
    preview None (the figure then has nothing to draw).
    """
    labels = np.asarray(labels) > 0
    n = labels.shape[0]
    ids = np.arange(n) if items is None else np.asarray(items)
    if ids.shape != (n,):
        raise ValueError(f"items must give one id per sampled item ({n}), got shape {ids.shape}")
    cache: dict[int, Mapping[str, str] | None] = {}

    def look(position: int) -> Mapping[str, str] | None:
        if preview is None:
            return None
        if position not in cache:
            cache[position] = preview(int(ids[position]))
        return cache[position]

    chosen = _distinct_queries(np.random.default_rng(seed).permutation(n), queries, look)

    out = []
    for direction in ("t2i", "i2t"):
        ranked = {name: top_k(np.asarray(text if direction == "t2i" else image)[chosen],
                              np.asarray(image if direction == "t2i" else text), k)
                  for name, (image, text) in models.items()}
        for row, q in enumerate(chosen):
            hits = {name: tuple(GalleryHit(int(p), int(ids[p]), bool((labels[p] & labels[q]).any()), bool(p == q),
                                           look(int(p))) for p in order[row])
                    for name, order in ranked.items()}
            out.append(GalleryQuery(direction, int(q), int(ids[q]), tuple(np.flatnonzero(labels[q]).tolist()),
                                    look(int(q)), hits))
    return out
