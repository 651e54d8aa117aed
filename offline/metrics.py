"""Offline evaluation metrics, vectorised over all users at once.

Inputs are dense indices: ``recommended`` is an int array ``[users, k]`` of item indices,
ranked best first, with ``-1`` for an empty slot; ``relevant`` is a CSR matrix
``users x items`` whose non-zeros are the user's relevant (test) items, row-aligned with
``recommended``. Relevance is binary.

Accuracy metrics follow Microsoft Recommenders' ``python_evaluation`` so that numbers are
comparable with their published MovieLens tables:

* precision@k = hits / k (k even when fewer than k items were recommended);
* recall@k = hits / number of relevant items;
* nDCG@k: DCG with discount 1 / log(1 + rank) over the ideal DCG of
  ``min(k, relevant)`` hits; the log base cancels;
* MAP: the sum of precision at each hit divided by the number of relevant items. That is
  their ``map`` (and what ``map_at_k`` computed when their benchmark tables were made;
  a MAP of 0.146 next to a recall of 0.219 is only possible with this denominator).
  Their current ``map_at_k`` divides by ``min(k, relevant)``: ``map_at_k(...,
  denominator="min_k")``.

Means are over users with at least one relevant item (their "common users": users in
the test part that received recommendations).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

IntArray = npt.NDArray[np.integer]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class RankingMetrics:
    """Mean accuracy metrics over the evaluated users."""

    map: float
    ndcg: float
    precision: float
    recall: float
    users: int

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def hit_matrix(recommended: IntArray, relevant: sp.csr_matrix) -> BoolArray:
    """``[users, k]`` booleans: is the item in each slot relevant to that row's user?"""
    n_users, n_items = relevant.shape
    if recommended.shape[0] != n_users:
        raise ValueError(f"{recommended.shape[0]} rows of recommendations for {n_users} users")
    rows = np.repeat(np.arange(n_users, dtype=np.int64), recommended.shape[1])
    cols = recommended.reshape(-1).astype(np.int64)
    # One int64 key per (user, item); membership of the flattened keys in the sorted
    # keys of the relevant matrix is one vectorised search.
    coo = relevant.tocoo()
    relevant_keys = np.sort(coo.row.astype(np.int64) * n_items + coo.col)
    keys = rows * n_items + cols
    hits = np.isin(keys, relevant_keys, assume_unique=False) & (cols >= 0)
    return hits.reshape(recommended.shape)


def precision_at_k(hits: BoolArray, k: int) -> FloatArray:
    return np.asarray(hits[:, :k].sum(axis=1), dtype=np.float64) / float(k)


def recall_at_k(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    return _safe_divide(hits[:, :k].sum(axis=1), n_relevant)


def ndcg_at_k(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal_cumulative = np.concatenate(([0.0], np.cumsum(discounts)))
    idcg = ideal_cumulative[np.minimum(n_relevant, k)]
    return _safe_divide(dcg, idcg)


def map_at_k(
    hits: BoolArray,
    n_relevant: IntArray,
    k: int,
    denominator: Literal["relevant", "min_k"] = "relevant",
) -> FloatArray:
    """Average precision per user; see the module docstring for the two denominators."""
    top = hits[:, :k]
    ranks = np.arange(1, top.shape[1] + 1)
    precision_at_hits = np.where(top, np.cumsum(top, axis=1) / ranks, 0.0)
    norm = n_relevant if denominator == "relevant" else np.minimum(n_relevant, k)
    return _safe_divide(precision_at_hits.sum(axis=1), norm)


ACCURACY = ("map", "ndcg", "precision", "recall")
"""The accuracy metrics, in the order of :class:`RankingMetrics`' fields."""


def user_metrics(
    recommended: IntArray, relevant: sp.csr_matrix, k: int = 10
) -> dict[str, FloatArray]:
    """Per-user MAP, nDCG@k, precision@k and recall@k (keys :data:`ACCURACY`), one value
    per user with a relevant item, in row order: the arrays :func:`ranking_metrics` means."""
    relevant = sp.csr_matrix(relevant)
    n_relevant = np.diff(relevant.indptr)
    users = n_relevant > 0
    hits = hit_matrix(recommended[:, :k], relevant)[users]
    n_rel = n_relevant[users]
    return {
        "map": map_at_k(hits, n_rel, k),
        "ndcg": ndcg_at_k(hits, n_rel, k),
        "precision": precision_at_k(hits, k),
        "recall": recall_at_k(hits, n_rel, k),
    }


def mean_metrics(per_user: Mapping[str, FloatArray]) -> RankingMetrics:
    """The means of :func:`user_metrics`' arrays (all 0 when no user is evaluated)."""
    users = len(per_user["ndcg"])
    if users == 0:
        return RankingMetrics(0.0, 0.0, 0.0, 0.0, 0)
    means = {name: float(np.mean(per_user[name])) for name in ACCURACY}
    return RankingMetrics(**means, users=users)


def ranking_metrics(recommended: IntArray, relevant: sp.csr_matrix, k: int = 10) -> RankingMetrics:
    """MAP, nDCG@k, precision@k and recall@k averaged over users with relevant items."""
    return mean_metrics(user_metrics(recommended, relevant, k))


def catalogue_coverage(recommended: IntArray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one recommendation list."""
    shown = np.unique(recommended[recommended >= 0])
    return len(shown) / n_items if n_items else 0.0


def item_popularity(train: sp.csr_matrix) -> npt.NDArray[np.int64]:
    """Number of distinct training users per item."""
    return np.asarray((sp.csr_matrix(train) != 0).sum(axis=0), dtype=np.int64).ravel()


def novelty(recommended: IntArray, popularity: IntArray, n_users: int) -> float:
    """Mean self-information ``-log2(p)`` of recommended items, ``p`` = share of users who
    interacted with the item in training. Unseen items count as seen by one user (their
    information would otherwise be infinite)."""
    items = recommended[recommended >= 0]
    if items.size == 0:
        return 0.0
    share = np.maximum(popularity[items], 1) / float(n_users)
    return float(-np.log2(share).mean())


def popularity_bias(recommended: IntArray, popularity: IntArray) -> float:
    """Mean popularity percentile of recommended items: 1.0 is the most popular item,
    ~0.5 what uniformly random recommendations score. Ties share their mean percentile."""
    items = recommended[recommended >= 0]
    if items.size == 0:
        return 0.0
    order = np.argsort(popularity, kind="stable")
    ranks = np.empty(len(popularity), dtype=np.float64)
    ranks[order] = np.arange(1, len(popularity) + 1)
    # Average ranks over ties so equal popularity means equal percentile.
    _, inverse = np.unique(popularity, return_inverse=True)
    mean_rank = np.bincount(inverse, weights=ranks) / np.bincount(inverse)
    percentile = mean_rank[inverse] / len(popularity)
    return float(percentile[items].mean())


@dataclass(frozen=True)
class SliceThresholds:
    """Users by training-history size: cold ``< cold_below``, heavy ``>= heavy_from``.

    Defaults: under 10 events a user is cold (collaborative signals are thin; the
    online tier leans on popularity and session signals there); from 100 on, heavy
    (history-rich users, where taste is well known and novelty matters most).
    """

    cold_below: int = 10
    heavy_from: int = 100


def user_slices(
    history_sizes: IntArray, thresholds: SliceThresholds = SliceThresholds()
) -> dict[str, BoolArray]:
    """Boolean masks of the cold, warm and heavy users."""
    sizes = np.asarray(history_sizes)
    cold = sizes < thresholds.cold_below
    heavy = sizes >= thresholds.heavy_from
    return {"cold": cold, "warm": ~cold & ~heavy, "heavy": heavy}


def slice_metrics(
    recommended: IntArray,
    relevant: sp.csr_matrix,
    history_sizes: IntArray,
    k: int = 10,
    thresholds: SliceThresholds = SliceThresholds(),
) -> dict[str, RankingMetrics]:
    """:func:`ranking_metrics` on each user slice (plus ``all``)."""
    relevant = sp.csr_matrix(relevant)
    out = {"all": ranking_metrics(recommended, relevant, k)}
    for name, mask in user_slices(history_sizes, thresholds).items():
        out[name] = ranking_metrics(recommended[mask], relevant[mask], k)
    return out


_CHUNK_DRAWS = 1 << 22
"""User draws per chunk of resamples: bounds the bootstrap's memory (~100 MB) for any
number of users, while ML-100K's 1,000 x 943 draws are one chunk."""


def bootstrap_intervals(
    columns: Mapping[K, npt.ArrayLike],
    n_resamples: int = 1000,
    seed: int = 42,
    level: float = 0.95,
) -> dict[K, tuple[float, float]]:
    """Percentile bootstrap intervals of the means of per-user columns of one length.

    Users are drawn with replacement ``n_resamples`` times, and the same draws serve every
    column: columns on the same users are resampled together (paired). A resample is a row
    of counts (how often each user was drawn), so the resampled means of all columns are one
    matrix product; resamples are drawn in chunks of at most ``_CHUNK_DRAWS`` user draws.
    The interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
    resampled means. Deterministic for a seed and a number of users.
    """
    names = list(columns)
    arrays = [np.asarray(columns[name], dtype=np.float64) for name in names]
    lengths = {a.shape for a in arrays}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise ValueError(f"bootstrap columns must be 1-D and of one length, not {lengths}")
    n = len(arrays[0])
    if n == 0 or n_resamples < 1 or not 0 < level < 1:
        raise ValueError(f"bootstrap of {n} users, {n_resamples} resamples, level {level}")
    values = np.column_stack(arrays)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_DRAWS // n)
    means = np.empty((n_resamples, len(names)))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = rng.integers(0, n, size=(size, n))
        draws += n * np.arange(size)[:, None]  # one bincount for the whole chunk
        counts = np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)
        means[start : start + size] = (counts.astype(np.float64) @ values) / n
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail], axis=0)
    return {name: (float(low[i]), float(high[i])) for i, name in enumerate(names)}


def bootstrap_interval(
    values: npt.ArrayLike, n_resamples: int = 1000, seed: int = 42, level: float = 0.95
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of one per-user array."""
    return bootstrap_intervals({0: values}, n_resamples, seed, level)[0]


def paired_bootstrap_interval(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    n_resamples: int = 1000,
    seed: int = 42,
    level: float = 0.95,
) -> tuple[float, float]:
    """The interval of ``mean(a) - mean(b)`` where ``a[i]`` and ``b[i]`` belong to the same
    user: each resample draws the same users for both, which is resampling ``a - b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays of shapes {a.shape} and {b.shape}")
    return bootstrap_interval(a - b, n_resamples, seed, level)


def _safe_divide(numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> FloatArray:
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
