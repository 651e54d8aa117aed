"""Contract of the event history role, run against every implementation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.events import Event, EventType
from shared.storage.factory import open_history
from shared.storage.history import EventHistoryStore


@pytest.fixture(params=["memory", "sqlite", pytest.param("cassandra", marks=pytest.mark.cassandra)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventHistoryStore]:
    if request.param == "cassandra":
        url = request.getfixturevalue("cassandra_keyspace_url")
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/history.db"
    else:
        url = "memory://history"
    s = open_history(url)
    s.init_schema()
    yield s
    s.close()


def events(user: str, n: int, start: float = 1_700_000_000.0) -> list[Event]:
    kinds = list(EventType)
    return [
        Event(
            event_id=f"{user}-e{i}",
            user_id=user,
            item_id=f"item{i % 7}",
            type=kinds[i % len(kinds)],
            value=4.0 if kinds[i % len(kinds)] is EventType.RATE else None,
            timestamp=start + i * 1.25,
            context={"surface": "home", "position": i, "arm": "control"},
        )
        for i in range(n)
    ]


def test_events_read_back_newest_first_and_equal(store: EventHistoryStore) -> None:
    written = events("alice", 6)
    store.append(written)
    assert store.for_user("alice") == list(reversed(written))


def test_append_is_idempotent_on_event_id(store: EventHistoryStore) -> None:
    written = events("bob", 5)
    store.append(written)
    store.append(written[1:3])  # a replayed batch, as at-least-once delivery produces
    store.append(written)
    assert len(store.for_user("bob", limit=100)) == 5


def test_limit_and_since(store: EventHistoryStore) -> None:
    written = events("carol", 10, start=1_000.0)
    store.append(written)
    assert [e.event_id for e in store.for_user("carol", limit=3)] == [
        "carol-e9",
        "carol-e8",
        "carol-e7",
    ]
    since = store.for_user("carol", since=written[6].timestamp)
    assert [e.event_id for e in since] == ["carol-e9", "carol-e8", "carol-e7", "carol-e6"]


def test_users_are_isolated(store: EventHistoryStore) -> None:
    store.append(events("dave", 3) + events("erin", 2))
    assert {e.user_id for e in store.for_user("dave")} == {"dave"}
    assert len(store.for_user("erin")) == 2
    assert store.for_user("nobody") == []


def test_millisecond_timestamps_survive(store: EventHistoryStore) -> None:
    event = Event(user_id="frank", item_id="i1", type=EventType.PLAY, timestamp=1_700_000_123.4567)
    assert event.timestamp == 1_700_000_123.457
    store.append([event])
    assert store.for_user("frank") == [event]


def test_a_large_mixed_batch_is_written_whole_and_replays_are_no_ops(
    store: EventHistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Many users, several events each, one with a large context: more than one write batch
    # (the Cassandra store cuts batches by size and partitions), interleaved as a log batch
    # would be. Within the server's batch thresholds, no write comes back with a warning.
    per_user = {f"user{u}": events(f"user{u}", 1 + u % 5) for u in range(120)}
    big = Event(
        event_id="big-1",
        user_id="user7",
        item_id="item1",
        type=EventType.PLAY,
        timestamp=1_800_000_000.0,
        context={f"k{i}": "x" * 200 for i in range(32)},
    )
    written = [e for i in range(5) for evs in per_user.values() if i < len(evs) for e in [evs[i]]]
    written.append(big)
    with caplog.at_level(logging.WARNING):
        store.append(written)
        store.append(written[::3])  # a partial replay
        store.append(written)
    assert not [r.getMessage() for r in caplog.records if "warning" in r.getMessage().lower()]
    for user, evs in per_user.items():
        expected = list(reversed(evs))
        if user == "user7":
            expected.insert(0, big)
        assert store.for_user(user) == expected
