"""The drift maths (shared.drift): PSI, JS, the fixed bins, the windows, the profile file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from shared import drift


def test_psi_and_js_are_zero_on_identical_distributions() -> None:
    counts = [10, 20, 30, 40]
    assert drift.psi(counts, counts) == pytest.approx(0.0, abs=1e-12)
    assert drift.js(counts, counts) == pytest.approx(0.0, abs=1e-12)
    # Shares, not counts: a window ten times larger with the same shape has not moved.
    assert drift.psi(counts, [100, 200, 300, 400]) == pytest.approx(0.0, abs=1e-12)


def test_psi_and_js_on_a_hand_example() -> None:
    p, q = [0.5, 0.5], [0.9, 0.1]
    expected_psi = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert drift.psi(p, q, eps=0.0) == pytest.approx(expected_psi)  # 0.8789
    m = [0.7, 0.3]
    expected_js = 0.5 * sum(a * math.log2(a / b) for a, b in zip(p, m, strict=True)) + 0.5 * sum(
        a * math.log2(a / b) for a, b in zip(q, m, strict=True)
    )
    assert drift.js(p, q, eps=0.0) == pytest.approx(expected_js)  # 0.1468
    # Disjoint supports: JS reaches its bound of one bit, PSI stays finite through epsilon.
    assert drift.js([1, 0], [0, 1]) == pytest.approx(1.0, abs=0.01)
    assert math.isfinite(drift.psi([1, 0], [0, 1]))


def test_js_is_symmetric_and_psi_too() -> None:
    p, q = [1, 5, 9, 2], [4, 4, 1, 7]
    assert drift.js(p, q) == pytest.approx(drift.js(q, p))
    assert drift.psi(p, q) == pytest.approx(drift.psi(q, p))


def test_divergences_grow_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=50_000)
    edges = drift.score_edges(base)
    reference = drift.score_histogram(base, edges)
    # Deciles of the reference: equal counts, ten bins.
    assert len(edges) == drift.SCORE_BINS - 1
    assert reference.min() == pytest.approx(reference.max(), rel=0.01)
    psis, jss = [], []
    for shift in (0.0, 0.1, 0.3, 0.6, 1.0):
        live = drift.score_histogram(rng.normal(loc=shift, size=20_000), edges)
        psis.append(drift.psi(reference, live))
        jss.append(drift.js(reference, live))
    assert psis == sorted(psis) and jss == sorted(jss)
    assert psis[0] < 0.01 and psis[-1] > 0.2


def test_popularity_buckets_are_deciles_by_rank() -> None:
    popularity = np.array([5, 100, 1, 50, 7, 3, 80, 2, 9, 60, 4, 0, 30, 20, 10, 6, 8, 40, 70, 90])
    buckets = drift.popularity_buckets(popularity)
    assert buckets[1] == 0 and buckets[11] == 9  # the most and least popular
    assert np.bincount(buckets).tolist() == [2] * 10


def test_user_events_in_log2_buckets() -> None:
    hist = drift.user_event_histogram([1, 1, 2, 3, 4, 7, 8, 5000, 0])
    assert hist.tolist()[:4] == [2, 2, 2, 1] and hist[-1] == 1 and hist.sum() == 8


def test_event_window_keeps_the_last_events_and_counts_them() -> None:
    window = drift.EventWindow(4, types=("click", "play"))
    window.add(np.array([0, 0, 0], np.int8), np.array([0, 0, 0], np.int8), np.array([1, 1, 1]))
    window.add(np.array([9, -1, 9], np.int8), np.array([1, 1, -1], np.int8), np.array([2, 3, 3]))
    assert window.size == 4
    hist = window.histograms()
    # Left: one event of user 1 on bucket 0, then bucket 9, an unknown item, bucket 9.
    assert hist["popularity"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert hist["unseen_items"].tolist() == [3, 1]
    assert hist["event_type"].tolist() == [1, 2]
    assert hist["user_events"].tolist()[:2] == [2, 1]  # users 1 and 2 once, user 3 twice
    # An impression counts for its type alone (and pushes out the oldest event, a click).
    window.add(np.array([drift.NOT_INTERACTION], np.int8), np.array([0], np.int8), np.array([4]))
    hist = window.histograms()
    assert hist["event_type"].tolist() == [1, 2]
    assert hist["popularity"].sum() + hist["unseen_items"][1] == 3
    assert hist["user_events"].sum() == 2  # users 2 and 3: user 4 has only an impression


def test_score_window_wraps() -> None:
    window = drift.ScoreWindow(5)
    window.add(np.arange(3, dtype=np.float32))
    window.add(np.arange(10, 14, dtype=np.float32))
    assert window.size == 5
    assert sorted(window.values().tolist()) == [2, 10, 11, 12, 13]
    window.clear()
    assert window.size == 0 and len(window.values()) == 0


def test_profile_round_trip_and_compare(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    popularity = rng.integers(0, 100, size=50)
    buckets = drift.popularity_buckets(popularity)
    items = rng.integers(0, 50, size=3000)
    users = rng.integers(0, 200, size=3000)
    profile = drift.training_profile(
        items,
        users,
        buckets,
        test_known=np.array([True] * 95 + [False] * 5),
        scores=rng.normal(size=2000),
        window=2000,
    )
    assert profile.window == 2000 and profile.unseen_items == [95.0, 5.0]
    assert profile.event_types is None and profile.scores is not None
    drift.write_profile(tmp_path, profile, buckets)
    ids = [f"i{n}" for n in range(50)]
    reference = drift.read_reference(tmp_path, "v1", ids)
    assert reference is not None and reference.profile == profile
    assert reference.item_buckets["i3"] == buckets[3]
    same = profile.histograms()
    result = drift.compare(profile, {k: same[k] for k in ("popularity", "user_events")})
    assert set(result) == {"popularity", "user_events"}
    assert all(v == pytest.approx((0.0, 0.0), abs=1e-12) for v in result.values())
    assert drift.read_profile(tmp_path / "elsewhere") is None
