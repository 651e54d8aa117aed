"""Contract of the user state role, run against every implementation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.storage.factory import open_user_state
from shared.storage.user_state import (
    StateEvent,
    UserState,
    UserStateStore,
    UserStateUpdate,
)
from tests.conftest import REDIS_URL, unique

CAP = 5


def _url(kind: str, tmp_path: Path) -> str:
    if kind == "redis":
        return f"{REDIS_URL}?namespace={unique('test')}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return "memory://state"


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[UserStateStore]:
    s = open_user_state(_url(kind, tmp_path), ttl_s=3600, recent_cap=CAP)
    s.init_schema()
    yield s
    s.close()


def test_unknown_user_has_no_state(store: UserStateStore) -> None:
    assert store.get("nobody") is None
    assert store.get_many(["nobody", "nobody-else"]) == {}


def test_recent_items_are_newest_first_and_capped(store: UserStateStore) -> None:
    store.apply([UserStateUpdate("u1", new_items=["a", "b", "c"])])
    store.apply([UserStateUpdate("u1", new_items=["d", "e", "f", "a"])])
    state = store.get("u1")
    assert state is not None
    assert state.recent_items == ["a", "f", "e", "d", "c"]


def test_counters_accumulate(store: UserStateStore) -> None:
    store.apply([UserStateUpdate("u1", counter_increments={"play": 2, "skip": 1})])
    store.apply(
        [
            UserStateUpdate("u1", counter_increments={"play": 3}),
            UserStateUpdate("u2", counter_increments={"click": 1}),
        ]
    )
    states = store.get_many(["u1", "u2"])
    assert states["u1"].counters == {"play": 5, "skip": 1}
    assert states["u2"].counters == {"click": 1}


def test_session_vector_and_last_active_round_trip(store: UserStateStore) -> None:
    vector = np.linspace(-1, 1, 32, dtype=np.float32)
    store.apply(
        [
            UserStateUpdate(
                "u1", ["x"], {"play": 1}, session_vector=vector, last_active=1_700_000_000.5
            )
        ]
    )
    store.apply([UserStateUpdate("u1", ["y"])])  # leaves vector and time alone
    state = store.get("u1")
    assert state is not None
    assert state.session_vector is not None
    assert state.session_vector.dtype == np.float32
    np.testing.assert_array_equal(state.session_vector, vector)
    assert state.last_active == 1_700_000_000.5
    assert state.recent_items == ["y", "x"]


def test_get_many_returns_only_known_users(store: UserStateStore) -> None:
    store.apply([UserStateUpdate(f"u{i}", [f"i{i}"]) for i in range(50)])
    states = store.get_many([f"u{i}" for i in range(0, 60, 5)])
    assert sorted(states) == sorted(f"u{i}" for i in range(0, 50, 5))
    assert all(states[u].recent_items == [f"i{u[1:]}"] for u in states)


def test_delete_forgets_the_user(store: UserStateStore) -> None:
    store.apply([UserStateUpdate("u1", ["a"], {"play": 1}), UserStateUpdate("u2", ["b"])])
    store.delete("u1")
    assert store.get("u1") is None
    assert store.get("u2") is not None


def test_state_expires_after_ttl(kind: str, tmp_path: Path) -> None:
    s = open_user_state(_url(kind, tmp_path), ttl_s=1, recent_cap=CAP)
    try:
        s.apply([UserStateUpdate("u1", ["a"], {"play": 1})])
        assert s.get("u1") is not None
        time.sleep(1.3)
        assert s.get("u1") is None
    finally:
        s.close()


def _events(user: str, n: int) -> list[StateEvent]:
    return [
        StateEvent(f"{user}-e{i}", user, f"i{i}", "play", 1_700_000_000.0 + i) for i in range(n)
    ]


def test_apply_events_counts_each_event_once(store: UserStateStore) -> None:
    first = _events("u1", 3) + _events("u2", 2)
    assert store.apply_events(first, half_life_s=60) == 5
    assert store.apply_events(first, half_life_s=60) == 0  # the same batch delivered again
    overlapping = _events("u1", 5)  # e0..e2 again, e3 and e4 new
    assert store.apply_events(overlapping, half_life_s=60) == 2
    states = store.get_many(["u1", "u2"])
    assert states["u1"].counters == {"play": 5}
    assert states["u1"].recent_items == ["i4", "i3", "i2", "i1", "i0"]
    assert states["u1"].last_active == 1_700_000_004.0
    assert states["u2"].counters == {"play": 2}


def test_apply_events_duplicates_inside_one_batch_count_once(store: UserStateStore) -> None:
    batch = _events("u1", 2)
    assert store.apply_events([*batch, *batch], half_life_s=60) == 2
    state = store.get("u1")
    assert state is not None
    assert state.counters == {"play": 2}
    assert state.recent_items == ["i1", "i0"]


def test_apply_events_types_recent_flag_and_cap(store: UserStateStore) -> None:
    events = [
        StateEvent("a", "u1", "x", "impression", 10.0, recent=False),
        StateEvent("b", "u1", "y", "click", 11.0),
        *_events("u1", 6),
        StateEvent("c", "u1", "z", "skip", 5.0, recent=False),  # late: last_active stays
    ]
    store.apply_events(events, half_life_s=60)
    state = store.get("u1")
    assert state is not None
    assert state.counters == {"impression": 1, "click": 1, "play": 6, "skip": 1}
    assert state.recent_items == ["i5", "i4", "i3", "i2", "i1"]  # capped at CAP, no x or z
    assert state.last_active == 1_700_000_005.0


def _decayed_mean(times: list[float], vectors: np.ndarray, half_life_s: float) -> np.ndarray:
    weights = np.exp2((np.asarray(times) - max(times)) / half_life_s)
    return (weights[:, None] * vectors).sum(axis=0) / weights.sum()


def test_session_vector_is_a_time_decayed_mean_in_any_order(store: UserStateStore) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(8, 16)).astype(np.float32)
    times = [1000.0, 1010.0, 1005.0, 1030.0, 1020.0, 1090.0, 1000.5, 1060.0]
    events = [
        StateEvent(f"e{i}", "u1", f"i{i}", "play", t, vector=vectors[i])
        for i, t in enumerate(times)
    ]
    store.apply_events(events[:3], half_life_s=30)
    store.apply_events(events[5:] + events[:4], half_life_s=30)  # a replay mixed with new ones
    store.apply_events(events[4:5], half_life_s=30)
    state = store.get("u1")
    assert state is not None
    assert state.session_vector is not None
    assert state.session_vector.dtype == np.float32
    expected = _decayed_mean(times, vectors, 30)
    np.testing.assert_allclose(state.session_vector, expected, rtol=1e-5, atol=1e-6)
    assert state.counters == {"play": 8}


def test_session_restarts_when_the_embedding_dimension_changes(store: UserStateStore) -> None:
    store.apply_events(
        [StateEvent("e1", "u1", "a", "play", 1.0, vector=np.ones(4, np.float32))], 60
    )
    store.apply_events(
        [StateEvent("e2", "u1", "b", "play", 2.0, vector=np.full(8, 2.0, np.float32))], 60
    )
    state = store.get("u1")
    assert state is not None
    assert state.session_vector is not None
    np.testing.assert_array_equal(state.session_vector, np.full(8, 2.0, np.float32))


def test_dedupe_window_keeps_the_latest_ids(kind: str, tmp_path: Path) -> None:
    s = open_user_state(_url(kind, tmp_path), ttl_s=3600, recent_cap=CAP)
    s.dedupe_window = 3
    try:
        s.apply_events(_events("u1", 5), half_life_s=60)
        assert s.apply_events(_events("u1", 5)[2:], half_life_s=60) == 0  # e2..e4 remembered
        assert s.apply_events(_events("u1", 1), half_life_s=60) == 1  # e0 fell out of the window
    finally:
        s.close()


def test_apply_events_state_expires_and_delete_forgets_dedupe(store: UserStateStore) -> None:
    store.apply_events(_events("u1", 2), half_life_s=60)
    store.delete("u1")
    assert store.get("u1") is None
    assert store.apply_events(_events("u1", 2), half_life_s=60) == 2


def test_non_blocking_read_equals_get_where_offered(store: UserStateStore) -> None:
    """Where a store offers ``aget`` (Redis), it reads exactly what ``get`` reads, on two
    event loops in turn (its async client belongs to one loop); elsewhere it refuses."""
    vector = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    store.apply(
        [UserStateUpdate("u1", ["a", "b"], {"play": 2}, session_vector=vector, last_active=7.5)]
    )

    async def read(user: str) -> UserState | None:
        try:
            return await store.aget(user)
        finally:
            await store.aclose()

    if not store.reads_async:
        with pytest.raises(NotImplementedError):
            asyncio.run(read("u1"))
        return
    for _ in range(2):
        got, expected = asyncio.run(read("u1")), store.get("u1")
        assert got is not None and expected is not None
        assert (got.recent_items, got.counters, got.last_active) == (
            expected.recent_items,
            expected.counters,
            expected.last_active,
        )
        assert got.session_vector is not None and expected.session_vector is not None
        assert np.array_equal(got.session_vector, expected.session_vector)
        assert got.recent_items == ["b", "a"] and got.counters == {"play": 2}
    assert asyncio.run(read("nobody")) is None


def test_state_does_not_depend_on_the_order_events_arrive(store: UserStateStore) -> None:
    """The history replayed into a state the worker has written since (a rebuild while it
    runs), or a replay mixed with new events: the same state as one in-order run."""
    rng = np.random.default_rng(11)
    times = 1_700_000_000.0 + rng.permutation(40).astype(float)
    times[7] = times[8]  # two events at the same time: ordered by event id
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    kinds = ["play", "click", "skip"]

    def events(user: str) -> list[StateEvent]:
        return [
            StateEvent(
                f"e{i:02d}", user, f"i{i % 13}", kinds[i % 3], float(t), vectors[i], i % 4 != 3
            )
            for i, t in enumerate(times)
        ]

    in_order = sorted(events("a"), key=lambda e: (e.timestamp, e.event_id))
    store.apply_events(in_order, half_life_s=20)
    shuffled = [events("b")[i] for i in rng.permutation(40)]
    for start in (0, 5, 6, 20, 33):  # uneven batches, newest and oldest mixed
        store.apply_events(shuffled[start : start + 14], half_life_s=20)
    store.apply_events(list(reversed(shuffled)), half_life_s=20)  # all again: nothing new
    a, b = store.get("a"), store.get("b")
    assert a is not None and b is not None
    assert a.recent_items == [e.item_id for e in reversed(in_order) if e.recent][:CAP]
    assert (b.recent_items, b.counters, b.last_active) == (
        a.recent_items,
        a.counters,
        a.last_active,
    )
    assert a.session_vector is not None and b.session_vector is not None
    np.testing.assert_allclose(b.session_vector, a.session_vector, rtol=1e-5, atol=1e-6)


def test_pushed_items_count_at_their_time(store: UserStateStore) -> None:
    """Items given to ``apply`` happened at its ``last_active``: an event from before them
    goes behind them, one from after in front."""
    store.apply([UserStateUpdate("u1", new_items=["a", "b"], last_active=100.0)])
    store.apply_events(
        [StateEvent("x", "u1", "old", "play", 50.0), StateEvent("y", "u1", "new", "play", 150.0)],
        half_life_s=60,
    )
    state = store.get("u1")
    assert state is not None
    assert state.recent_items == ["new", "b", "a", "old"]


@pytest.mark.redis
def test_redis_state_of_an_older_release_reads_and_takes_new_events() -> None:
    """An older release kept the recent items as a plain list: reads take it as it is, and
    the first new event turns it into the time-ordered set, its items at last active."""
    import redis

    namespace = unique("legacy")
    store = open_user_state(f"{REDIS_URL}?namespace={namespace}", ttl_s=3600, recent_cap=CAP)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.rpush(f"{namespace}:{{u1}}:recent", "c", "b", "a")  # newest first
        client.hset(f"{namespace}:{{u1}}:state", mapping={"last_active": 100.0, "c:play": 3})
        old = store.get("u1")
        assert old is not None and old.recent_items == ["c", "b", "a"]
        assert store.get_many(["u1"])["u1"].recent_items == ["c", "b", "a"]
        store.apply_events(
            [
                StateEvent("x", "u1", "early", "play", 50.0),
                StateEvent("y", "u1", "d", "play", 150.0),
            ],
            half_life_s=60,
        )
        new = store.get("u1")
        assert new is not None
        assert new.recent_items == ["d", "c", "b", "a", "early"]
        assert new.counters == {"play": 5} and new.last_active == 150.0
    finally:
        client.delete(*client.keys(f"{namespace}:*"))
        client.close()
        store.close()


def test_sqlite_row_of_an_older_release_reads_and_takes_new_events(tmp_path: Path) -> None:
    """A row written before the recent entries were kept: its items, in order, at last
    active."""
    import sqlite3

    import orjson

    store = open_user_state(f"sqlite:///{tmp_path}/state.db", ttl_s=3600, recent_cap=CAP)
    store.init_schema()
    old = {"recent_items": ["c", "b", "a"], "counters": {"play": 3}, "last_active": 100.0}
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute(
            "INSERT INTO user_state VALUES (?, ?, NULL, ?)",
            ("u1", orjson.dumps(old), time.time() + 3600),
        )
    state = store.get("u1")
    assert state is not None and state.recent_items == ["c", "b", "a"]
    store.apply_events(
        [StateEvent("x", "u1", "early", "play", 50.0), StateEvent("y", "u1", "d", "play", 150.0)],
        half_life_s=60,
    )
    new = store.get("u1")
    assert new is not None and new.recent_items == ["d", "c", "b", "a", "early"]
    store.close()
