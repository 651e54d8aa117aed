"""Contract of the event history role, run against every implementation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.events import MAX_SHOWN, Event, EventType, Shown
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


def test_impressions_of_both_shapes_read_back_equal(
    store: EventHistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    # One event per answer with its shown list (a full answer, the longest the API sends,
    # and a short one), one event per item as older logs hold them, and an older event
    # whose context has a scalar "shown": each comes back as it was written, among other
    # users' rows so that the long list shares a write with other partitions.
    def answer(event_id: str, t: float, n: int) -> Event:
        shown = tuple(
            Shown(item_id=f"item{i}", position=i, source="precomputed:ease+als") for i in range(n)
        )
        context = {"arm": "blend", "bundle": "b1", "surface": "home", "request_id": event_id}
        return Event(
            event_id=event_id,
            user_id="gina",
            item_id=shown[0].item_id,
            type=EventType.IMPRESSION,
            timestamp=t,
            context=context,
            shown=shown,
        )

    full = answer("gina-a1", 1_700_000_001.0, MAX_SHOWN)
    short = answer("gina-a2", 1_700_000_002.0, 3)
    per_item = Event(
        event_id="gina-o1",
        user_id="gina",
        item_id="item9",
        type=EventType.IMPRESSION,
        timestamp=1_700_000_003.0,
        context={"surface": "home", "position": 4, "source": "popular", "arm": "control"},
    )
    scalar = Event(
        event_id="gina-o2",
        user_id="gina",
        item_id="item9",
        type=EventType.CLICK,
        timestamp=1_700_000_004.0,
        context={"shown": "carousel"},
    )
    others = [e for u in range(12) for e in events(f"other{u}", 2)]
    with caplog.at_level(logging.WARNING):
        store.append([*others[:12], full, short, per_item, scalar, *others[12:]])
        store.append([full, per_item])  # a replay changes nothing
    assert not [r.getMessage() for r in caplog.records if "warning" in r.getMessage().lower()]
    read = store.for_user("gina")
    assert read == [scalar, per_item, short, full]
    assert read[3].shown is not None and len(read[3].shown) == MAX_SHOWN
    assert read[1].shown is None and read[0].context == {"shown": "carousel"}


def test_users_lists_every_user_once(store: EventHistoryStore) -> None:
    assert set(store.users()) == set()
    store.append(events("carol", 3) + events("dave", 2))
    store.append(events("carol", 3))  # a replay adds no user
    listed = list(store.users())
    assert sorted(listed) == ["carol", "dave"]


@pytest.mark.cassandra
def test_a_read_at_consistency_all_finds_what_a_quorum_read_finds(
    cassandra_keyspace_url: str,
) -> None:
    """The fault benchmark's cross-check of a quorum read (Cassandra only)."""
    from shared.storage.cassandra.history import CassandraEventHistoryStore

    s = CassandraEventHistoryStore(cassandra_keyspace_url)
    try:
        s.init_schema()
        written = events("erin", 4)
        s.append(written)
        assert s.event_ids_at_all("erin") == {e.event_id for e in s.for_user("erin")}
        assert s.event_ids_at_all("erin") == {e.event_id for e in written}
        assert s.event_ids_at_all("nobody") == set()
    finally:
        s.close()
