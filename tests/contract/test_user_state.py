"""Contract of the user state role, run against every implementation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.storage.factory import open_user_state
from shared.storage.user_state import UserStateStore, UserStateUpdate, merge_recent
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
    assert state.recent_items == merge_recent(
        merge_recent([], ["a", "b", "c"], CAP), ["d", "e", "f", "a"], CAP
    )


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
