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

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

IntArray = npt.NDArray[np.integer]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


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


def ranking_metrics(recommended: IntArray, relevant: sp.csr_matrix, k: int = 10) -> RankingMetrics:
    """MAP, nDCG@k, precision@k and recall@k averaged over users with relevant items."""
    relevant = sp.csr_matrix(relevant)
    n_relevant = np.diff(relevant.indptr)
    users = n_relevant > 0
    hits = hit_matrix(recommended[:, :k], relevant)[users]
    n_rel = n_relevant[users]
    if not users.any():
        return RankingMetrics(0.0, 0.0, 0.0, 0.0, 0)
    return RankingMetrics(
        map=float(map_at_k(hits, n_rel, k).mean()),
        ndcg=float(ndcg_at_k(hits, n_rel, k).mean()),
        precision=float(precision_at_k(hits, k).mean()),
        recall=float(recall_at_k(hits, n_rel, k).mean()),
        users=int(users.sum()),
    )


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


def _safe_divide(numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> FloatArray:
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
