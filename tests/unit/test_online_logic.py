"""Pure pieces of the online tier: merge and select, experiment arms, fallback features."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from online import blend
from online.experiments import assign
from shared.fresh import FreshCandidate
from shared.online_features import history_length, spec_members, unproposed_features
from shared.ranker import FeatureSpec, assemble_features, feature_names


def test_merge_dedupes_keeps_every_source_and_drops_seen() -> None:
    pool = blend.merge(
        precomputed=(["a", "b", "c", "d"], [4.0, 3.0, 2.0, 1.0], ["ease+als", "als", "", "ease"]),
        fresh=[FreshCandidate("b", 0.9, "x"), FreshCandidate("e", 0.8, "x")],
        trending=["e", "f", "g"],
        popular=["a", "h"],
        drop={"c"},
        quotas=blend.Quotas(precomputed=2, fresh=5, trending=2, popular=5),
    )
    by_id = {p.item_id: p for p in pool}
    assert list(by_id) == ["a", "b", "e", "f", "h"]  # quota 2 precomputed, c dropped
    assert by_id["b"].sources == ["precomputed:als", "fresh"] and by_id["b"].because == "x"
    assert by_id["e"].sources == ["fresh", "trending"]
    assert by_id["a"].sources == ["precomputed:ease+als", "popular"]
    assert by_id["a"].stored_row == 0 and by_id["b"].stored_row == 1


def test_select_keeps_slots_for_fresh_and_caps_genres() -> None:
    items = [f"p{j}" for j in range(10)] + ["f0", "f1", "t0"]
    pool = [blend.Pooled(i, ["precomputed"]) for i in items[:10]]
    pool += [blend.Pooled("f0", ["fresh"]), blend.Pooled("f1", ["fresh"])]
    pool += [blend.Pooled("t0", ["trending"])]
    scores = np.asarray([10 - j for j in range(10)] + [-1, -2, -3], dtype=np.float32)
    genre = {i: ("A" if i.startswith("p") and int(i[1:]) < 6 else "B") for i in items}
    chosen = blend.select(pool, scores, 5, genre_of=genre.get, genre_cap=0.4)
    picked = [pool[i].item_id for i in chosen]
    assert len(picked) == 5 and "f0" in picked and "t0" in picked
    assert sum(genre[p] == "A" for p in picked) <= 2
    # without shares or cap: pure score order
    plain = blend.select(pool, scores, 5, genre_of=lambda _: None, genre_cap=1.0, min_share={})
    assert [pool[i].item_id for i in plain] == ["p0", "p1", "p2", "p3", "p4"]


def test_reasons() -> None:
    title = {"x": "Heat"}.get
    fresh = blend.Pooled("a", ["fresh"], because="x")
    assert blend.reason(fresh, lambda i: title(i) or i, cold=False) == "because you watched Heat"
    assert "new here" in blend.reason(blend.Pooled("b", ["popular"]), str, cold=True)
    assert blend.reason(blend.Pooled("b", ["trending"]), str, cold=False) == "trending now"


_ASSIGN = (
    "from online.experiments import assign;"
    "print(','.join(assign(f'user{j}', 'exp1', {'control': 1, 'blend': 1}).name"
    " for j in range(200)))"
)


def test_assignment_is_stable_across_processes_and_follows_weights() -> None:
    here = [assign(f"user{j}", "exp1", {"control": 1, "blend": 1}).name for j in range(200)]
    for seed in ("0", "12345"):  # Python's own hash is salted per process: not used here
        out = subprocess.run(
            [sys.executable, "-c", _ASSIGN],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        )
        assert out.stdout.strip().split(",") == here
    assert 70 < here.count("blend") < 130
    assert {assign(f"u{j}", "s", {"control": 1, "blend": 0}).name for j in range(50)} == {"control"}
    other_salt = [assign(f"user{j}", "exp2", {"control": 1, "blend": 1}).name for j in range(200)]
    assert other_salt != here


def _spec(members: tuple[str, ...], top_n: int = 20) -> FeatureSpec:
    names = feature_names(members)
    return FeatureSpec(names, (0.0,) * len(names), (1.0,) * len(names), (4,), top_n)


def test_unproposed_features_match_the_offline_layout() -> None:
    spec = _spec(("ease", "als", "covisit"))
    assert spec_members(spec) == ["ease", "als", "covisit"]
    rows = unproposed_features(spec, [0, 9, 99], history=7)
    assert rows.shape == (3, len(spec.names)) and rows.dtype == np.float32
    column = dict(zip(spec.names, rows.T, strict=True))
    for m in ("ease", "als", "covisit"):
        assert (column[f"{m}_z"] == 0).all() and (column[f"{m}_in_top"] == 0).all()
        assert column[f"{m}_logrank"] == pytest.approx(np.log1p(20))
    assert column["item_log_pop"] == pytest.approx(np.log1p([0, 9, 99]))
    assert column["user_log_history"] == pytest.approx(np.log1p(7))
    # the same as assemble_features with every generator ranking the item outside its list
    shape = (1, 3)
    offline = assemble_features(
        ["ease", "als", "covisit"],
        z={m: np.zeros(shape) for m in ("ease", "als", "covisit")},
        rank={m: np.full(shape, 20) for m in ("ease", "als", "covisit")},
        item_popularity=np.asarray([[0, 9, 99]]),
        history=np.asarray([7]),
        top_n=20,
    )[0]
    assert np.array_equal(rows, offline)


def test_history_length_prefers_the_stored_value() -> None:
    spec = _spec(("als",))
    stored = unproposed_features(spec, [3, 4], history=41)
    assert history_length(spec, stored, ["a", "b"]) == 41
    assert history_length(spec, None, ["a", "b", "a"]) == 2


def test_store_slot_retries_opening_and_bounds_calls() -> None:
    import asyncio
    import time
    from concurrent.futures import ThreadPoolExecutor

    from online.stores import CandidateCache, StageFailed, StoreSlot
    from shared.storage.factory import open_candidates

    attempts: list[int] = []

    def opener() -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionRefusedError("nobody home")
        return open_candidates("memory://")

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as pool:
            slot = StoreSlot("candidates", opener, pool, retry_s=0.05)
            assert not slot.try_open() and "nobody home" in (slot.error or "")
            with pytest.raises(StageFailed, match="unavailable"):
                await slot.call(lambda s: s.live_version(), 1.0)
            assert not slot.try_open()  # too soon: not tried again
            time.sleep(0.06)
            assert slot.try_open() and slot.ping() is None
            assert await slot.call(lambda s: s.live_version(), 1.0) is None
            started = time.perf_counter()
            with pytest.raises(StageFailed, match="timeout"):
                await slot.call(lambda s: time.sleep(0.3), 0.02)
            assert time.perf_counter() - started < 0.2
            slot.trip_after, slot.cooldown_s = 2, 0.3
            with pytest.raises(StageFailed, match="timeout"):
                await slot.call(lambda s: time.sleep(0.3), 0.02)
            started = time.perf_counter()
            with pytest.raises(StageFailed, match="circuit open"):  # at once, not queued
                await slot.call(lambda s: s.live_version(), 1.0)
            assert time.perf_counter() - started < 0.01
            time.sleep(0.35)  # cooldown over, and the stalled calls finished
            assert await slot.call(lambda s: s.live_version(), 1.0) is None  # probe heals
            assert slot._in_flight == 0
            slot.close()

    asyncio.run(scenario())
    assert len(attempts) == 2

    cache = CandidateCache(ttl_s=60, size=2)
    for user in ("a", "b", "c"):
        cache.put("v1", user, None)
    assert cache.get("v1", "a") == (False, None)  # evicted (LRU, size 2)
    assert cache.get("v1", "c") == (True, None) and cache.get("v2", "c") == (False, None)
