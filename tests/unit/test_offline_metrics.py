"""Offline metrics against small cases computed by hand (the arithmetic is in comments)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp  # type: ignore[import-untyped]

from offline.metrics import (
    SliceThresholds,
    catalogue_coverage,
    hit_matrix,
    map_at_k,
    ndcg_at_k,
    novelty,
    popularity_bias,
    ranking_metrics,
    slice_metrics,
    user_slices,
)


def relevant_matrix(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    data = [(u, i) for u, items in enumerate(rows) for i in items]
    r = [u for u, _ in data]
    c = [i for _, i in data]
    return sp.csr_matrix((np.ones(len(data)), (r, c)), shape=(len(rows), n_items))


def test_hand_computed_case() -> None:
    # user 0: recs [1, 2, 3], relevant {1, 3, 4} -> hits [1, 0, 1]
    #   P@3 = 2/3, R@3 = 2/3
    #   DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG (3 relevant) = 1 + 1/log2(3) + 1/2 = 2.130930
    #   nDCG = 0.703918;  AP = (1/1 + 2/3) / 3 = 0.555556
    # user 1: recs [0, 4, empty], relevant {2} -> no hit: all metrics 0
    # user 2: no relevant item -> not averaged (not a test user)
    recommended = np.array([[1, 2, 3], [0, 4, -1], [0, 1, 2]])
    relevant = relevant_matrix([[1, 3, 4], [2], []], n_items=5)
    m = ranking_metrics(recommended, relevant, k=3)
    assert m.users == 2
    assert m.precision == pytest.approx((2 / 3) / 2)
    assert m.recall == pytest.approx((2 / 3) / 2)
    assert m.ndcg == pytest.approx(0.703918 / 2, abs=1e-6)
    assert m.map == pytest.approx(0.555556 / 2, abs=1e-6)


def test_hit_matrix_ignores_empty_slots() -> None:
    relevant = relevant_matrix([[0]], n_items=3)
    hits = hit_matrix(np.array([[-1, 0, 2]]), relevant)
    assert hits.tolist() == [[False, True, False]]


def test_ndcg_ideal_uses_min_k_relevant() -> None:
    # one relevant item at rank 2 of k=2: DCG = 1/log2(3) = 0.630930; IDCG = 1/log2(2) = 1
    hits = np.array([[False, True]])
    assert ndcg_at_k(hits, np.array([1]), k=2)[0] == pytest.approx(0.630930, abs=1e-6)


def test_map_denominators() -> None:
    # two hits at ranks 1 and 2, 20 relevant items: precisions 1/1 + 2/2 = 2
    #   "relevant" (benchmark MAP): 2 / 20 = 0.1;  "min_k": 2 / min(20, 2) = 1.0
    hits = np.array([[True, True]])
    assert map_at_k(hits, np.array([20]), k=2)[0] == pytest.approx(0.1)
    assert map_at_k(hits, np.array([20]), k=2, denominator="min_k")[0] == pytest.approx(1.0)


def test_precision_divides_by_k_even_with_short_lists() -> None:
    # one hit, list of length 1 padded to k=4: P@4 = 1/4 (MS Recommenders / Spark rule)
    m = ranking_metrics(np.array([[0, -1, -1, -1]]), relevant_matrix([[0]], 2), k=4)
    assert m.precision == pytest.approx(0.25)
    assert m.recall == pytest.approx(1.0)


def test_beyond_accuracy_metrics() -> None:
    popularity = np.array([4, 2, 1, 0])  # users per item, 4 users
    recommended = np.array([[0, 1], [2, 3]])
    # shares 4/4, 2/4, 1/4, max(0, 1)/4 -> -log2: 0, 1, 2, 2 -> mean 1.25
    assert novelty(recommended, popularity, n_users=4) == pytest.approx(1.25)
    # percentiles: item0 4/4, item1 3/4, item2 2/4, item3 1/4; recs {0, 1} -> 0.875
    assert popularity_bias(np.array([[0, 1]]), popularity) == pytest.approx(0.875)
    # ties share their mean rank: popularity [1, 1, 3] -> ranks 1.5, 1.5, 3 -> 0.5, 0.5, 1
    assert popularity_bias(np.array([[0, 2]]), np.array([1, 1, 3])) == pytest.approx(0.75)
    # items {0, 1} of 4 shown
    assert catalogue_coverage(np.array([[0, 1], [1, -1]]), n_items=4) == pytest.approx(0.5)


def test_slices() -> None:
    sizes = np.array([5, 50, 150])
    masks = user_slices(sizes, SliceThresholds(cold_below=10, heavy_from=100))
    assert masks["cold"].tolist() == [True, False, False]
    assert masks["warm"].tolist() == [False, True, False]
    assert masks["heavy"].tolist() == [False, False, True]
    # only the heavy user hits (P@1 = 1): all = 1/3, heavy = 1, others 0
    recommended = np.array([[1], [1], [0]])
    relevant = relevant_matrix([[0], [0], [0]], 2)
    out = slice_metrics(recommended, relevant, sizes, k=1)
    assert out["all"].precision == pytest.approx(1 / 3)
    assert out["heavy"].precision == pytest.approx(1.0)
    assert out["cold"].precision == 0.0
