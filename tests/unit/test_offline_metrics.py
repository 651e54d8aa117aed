"""Offline metrics against small cases computed by hand (the arithmetic is in comments)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp  # type: ignore[import-untyped]

import offline.metrics
from offline.metrics import (
    SliceThresholds,
    bootstrap_interval,
    bootstrap_intervals,
    catalogue_coverage,
    hit_matrix,
    map_at_k,
    ndcg_at_k,
    novelty,
    paired_bootstrap_interval,
    popularity_bias,
    ranking_metrics,
    slice_metrics,
    user_metrics,
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


def test_user_metrics_are_the_arrays_ranking_metrics_means() -> None:
    # the hand-computed case above: user 2 (no relevant item) has no value
    recommended = np.array([[1, 2, 3], [0, 4, -1], [0, 1, 2]])
    relevant = relevant_matrix([[1, 3, 4], [2], []], n_items=5)
    per_user = user_metrics(recommended, relevant, k=3)
    assert per_user["ndcg"] == pytest.approx([0.703918, 0.0], abs=1e-6)
    assert per_user["map"] == pytest.approx([0.555556, 0.0], abs=1e-6)
    assert per_user["precision"] == pytest.approx([2 / 3, 0.0])
    assert per_user["recall"] == pytest.approx([2 / 3, 0.0])
    m = ranking_metrics(recommended, relevant, k=3)
    assert (m.map, m.ndcg, m.precision, m.recall) == tuple(
        float(per_user[name].mean()) for name in ("map", "ndcg", "precision", "recall")
    )


def test_bootstrap_interval_contains_the_mean_and_narrows_with_users() -> None:
    rng = np.random.default_rng(7)
    few, many = rng.random(100), rng.random(10_000)
    low_few, high_few = bootstrap_interval(few)
    low_many, high_many = bootstrap_interval(many)
    assert low_few < few.mean() < high_few
    assert low_many < many.mean() < high_many
    # the standard error of a mean shrinks as 1 / sqrt(users): 100 times the users, a
    # tenth of the width (about 0.113 -> 0.011 for uniform values)
    assert (high_many - low_many) < (high_few - low_few) / 5
    assert 0.08 < high_few - low_few < 0.15


def test_bootstrap_is_the_percentile_interval_of_resampled_means() -> None:
    # the counts-and-matrix-product shortcut against resampling written out by hand
    values = np.random.default_rng(3).random(50)
    picks = np.random.default_rng(42).integers(0, 50, size=(200, 50))
    expected = np.quantile(values[picks].mean(axis=1), [0.05, 0.95])
    assert bootstrap_interval(values, n_resamples=200, seed=42, level=0.9) == pytest.approx(
        tuple(expected), abs=1e-12
    )


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = np.random.default_rng(1).random(300)
    assert bootstrap_interval(values, seed=5) == bootstrap_interval(values, seed=5)
    assert bootstrap_interval(values, seed=5) != bootstrap_interval(values, seed=6)


def test_paired_interval_known_cases() -> None:
    same = np.random.default_rng(2).random(200)
    assert paired_bootstrap_interval(same, same) == (0.0, 0.0)
    # every user gains exactly 1 (or 0.25): every resample's mean difference is that
    assert paired_bootstrap_interval(np.ones(200), np.zeros(200)) == (1.0, 1.0)
    assert paired_bootstrap_interval(np.full(8, 0.75), np.full(8, 0.5)) == (0.25, 0.25)
    with pytest.raises(ValueError, match="shapes"):
        paired_bootstrap_interval(np.ones(3), np.ones(4))


def test_paired_interval_is_narrower_than_the_unpaired_difference() -> None:
    # two lists that differ by a small constant on top of a large per-user spread: the
    # paired interval sees only the constant, the separate intervals overlap widely
    rng = np.random.default_rng(4)
    base = rng.random(500)
    better = base + 0.01
    low, high = paired_bootstrap_interval(better, base)
    assert (low, high) == pytest.approx((0.01, 0.01), abs=1e-9)
    assert bootstrap_interval(base)[1] > bootstrap_interval(better)[0]


def test_bootstrap_columns_share_resamples_and_chunks_bound_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(5)
    a, b = rng.random(400), rng.random(400)
    out = bootstrap_intervals({"a": a, "b": b, "a-b": a - b})
    assert out["a"] == pytest.approx(bootstrap_interval(a), abs=1e-12)
    assert out["a-b"] == pytest.approx(paired_bootstrap_interval(a, b), abs=1e-12)
    # 1,000 draws per chunk: 400 users make 2 resamples a chunk, 500 chunks
    monkeypatch.setattr(offline.metrics, "_CHUNK_DRAWS", 1_000)
    assert paired_bootstrap_interval(np.ones(400), np.zeros(400)) == (1.0, 1.0)
    chunked = bootstrap_interval(a)
    assert chunked[0] < a.mean() < chunked[1]
    assert chunked == pytest.approx(out["a"], abs=0.01)


def test_bootstrap_rejects_what_it_cannot_resample() -> None:
    with pytest.raises(ValueError, match="of 0 users"):
        bootstrap_interval(np.array([]))
    with pytest.raises(ValueError, match="of one length"):
        bootstrap_intervals({"a": np.ones(3), "b": np.ones(4)})
    with pytest.raises(ValueError, match=r"level 1\.0"):
        bootstrap_interval(np.ones(3), level=1.0)
