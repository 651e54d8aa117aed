"""The nearline worker, lake, API and fresh candidates on the embedded stores."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from nearline.api import create_app
from nearline.embeddings import LiveItemVectors
from nearline.lake import LakeWriter, read_lake
from nearline.metrics import NearlineMetrics
from nearline.worker import Worker, WorkerConfig, parse
from shared.bundle import ITEM_IDS, ITEM_VECTORS, Embeddings, write_embeddings
from shared.errors import ConfigError
from shared.events import Event, EventType, Shown
from shared.fresh import FreshCandidates, fresh_candidates
from shared.index import build_index
from shared.registry import ModelRegistry
from shared.storage.event_log import EventLog, LogRecord
from shared.storage.factory import open_event_log, open_history, open_user_state
from shared.storage.history import EventHistoryStore
from shared.storage.user_state import Session, UserState, UserStateStore

TYPES = list(EventType)


def make_events(users: int, per_user: int, t0: float = 1_700_000_000.0) -> list[Event]:
    return [
        Event(
            event_id=f"u{u}-{i}",
            user_id=f"u{u}",
            item_id=f"i{(u * 7 + i) % 40}",
            type=TYPES[(u + i) % len(TYPES)],
            value=4.0 if TYPES[(u + i) % len(TYPES)] is EventType.RATE else None,
            timestamp=t0 + i * 60.0,
            context={"device": "tv"},
        )
        for u in range(users)
        for i in range(per_user)
    ]


def write_bundle(root: Path, items: int = 40, dim: int = 8) -> Embeddings:
    rng = np.random.default_rng(0)
    embeddings = Embeddings(
        [f"i{i}" for i in range(items)], rng.normal(size=(items, dim)).astype(np.float32)
    )
    registry = ModelRegistry(f"file://{root}")
    with registry.create(None, "test", {}) as bundle:
        write_embeddings(bundle.path, ITEM_IDS, ITEM_VECTORS, embeddings)
    registry.promote(bundle.version)
    return embeddings


class Stores:
    def __init__(self, tmp_path: Path) -> None:
        self.log: EventLog = open_event_log(f"sqlite:///{tmp_path}/log.db")
        self.log.init_schema(partitions=4)
        self.state: UserStateStore = open_user_state("memory://state", ttl_s=3600, recent_cap=50)
        self.history: EventHistoryStore = open_history("memory://history")
        self.lake = tmp_path / "lake"
        self.registry = ModelRegistry(f"file://{tmp_path}/models")
        self.embeddings = write_bundle(tmp_path / "models")

    def worker(
        self, group: str = "g", history: EventHistoryStore | None = None, **config: float
    ) -> Worker:
        return Worker(
            self.log,
            self.state,
            history if history is not None else self.history,
            LakeWriter(self.lake, self.log.topic),
            vectors=LiveItemVectors(self.registry),
            config=WorkerConfig(group_id=group, **config),  # type: ignore[arg-type]
        )

    def close(self) -> None:
        for store in (self.log, self.state, self.history):
            store.close()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    s = Stores(tmp_path)
    yield s
    s.close()


def produce(log: EventLog, events: list[Event]) -> None:
    log.append([(e.user_id, e.to_json()) for e in events])


def expected_counters(events: list[Event]) -> dict[str, dict[str, int]]:
    out: dict[str, Counter[str]] = {}
    for e in events:
        out.setdefault(e.user_id, Counter())[e.type.value] += 1
    return {u: dict(c) for u, c in out.items()}


def test_worker_applies_every_event_once_to_state_history_and_lake(stores: Stores) -> None:
    events = make_events(users=20, per_user=30)
    produce(stores.log, events)
    started = time.perf_counter()
    stats = stores.worker(poll_records=100).run(max_records=len(events))
    assert (stats.records, stats.applied, stats.duplicates) == (600, 600, 0)
    assert stats.first_records_at is not None and started < stats.first_records_at
    states = stores.state.get_many([f"u{u}" for u in range(20)])
    assert {u: s.counters for u, s in states.items()} == expected_counters(events)
    u0 = states["u0"]
    engaged = [
        e.item_id
        for e in events
        if e.user_id == "u0" and e.type.value in {"click", "play", "rate", "add_to_list"}
    ]
    assert u0.recent_items == list(reversed(engaged))
    assert u0.last_active == max(e.timestamp for e in events if e.user_id == "u0")
    assert u0.session_vector is not None and u0.session_vector.shape == (8,)
    assert len(stores.history.for_user("u3", limit=1000)) == 30
    lake = read_lake(stores.lake)
    assert len(lake) == 600 and set(lake["event_id"]) == {e.event_id for e in events}
    raw = sum(len(pq_rows(p)) for p in stores.lake.glob("*.parquet"))
    assert raw == 600


def test_worker_applies_impressions_of_both_shapes(stores: Stores) -> None:
    """One event per answer (the list shown) beside an old per-item impression: each counts
    one impression, neither seeds the recent items, the list's vectors pull the session as
    their mean, and the history and lake keep the list."""
    t0 = 1_700_000_000.0
    play = Event(event_id="p1", user_id="u1", item_id="i3", type=EventType.PLAY, timestamp=t0)
    context: dict[str, str | bool] = {"arm": "control", "bundle": "v1", "surface": "home"}
    answer = Event(
        event_id="a1",
        user_id="u1",
        item_id="i5",
        type=EventType.IMPRESSION,
        timestamp=t0 + 60,
        context=context | {"request_id": "r1", "degraded": False},
        shown=tuple(
            Shown(item_id=item, position=p, source="precomputed:ease")
            for p, item in enumerate(["i5", "i9", "i13"])
        ),
    )
    old = Event(
        event_id="o1",
        user_id="u2",
        item_id="i7",
        type=EventType.IMPRESSION,
        timestamp=t0,
        context=context | {"position": 0, "source": "fresh"},
    )
    produce(stores.log, [play, answer, old])
    stats = stores.worker().run(max_records=3)
    assert (stats.applied, stats.dead_letters) == (3, 0)
    states = stores.state.get_many(["u1", "u2"])
    assert states["u1"].counters == {"play": 1, "impression": 1}  # one list shown
    assert states["u2"].counters == {"impression": 1}
    assert states["u1"].recent_items == ["i3"] and states["u2"].recent_items == []
    rows = stores.embeddings.position()
    vector = {i: stores.embeddings.vectors[rows[i]].astype(np.float64) for i in rows}
    half_life, session = WorkerConfig().half_life_s, Session(np.zeros(8), 0.0, t0)
    session.fold(t0, vector["i3"], half_life)
    session.fold(t0 + 60, (vector["i5"] + vector["i9"] + vector["i13"]) / 3, half_life)
    u1_session, u2_session = states["u1"].session_vector, states["u2"].session_vector
    assert u1_session is not None and np.allclose(u1_session, session.mean, atol=1e-5)
    assert u2_session is not None and np.allclose(u2_session, vector["i7"], atol=1e-6)
    assert stores.history.for_user("u1") == [answer, play]
    lake = read_lake(stores.lake).set_index("event_id")
    assert lake.loc["a1", "item_id"] == "i5" and lake.loc["a1", "type"] == "impression"
    assert orjson.loads(lake.loc["a1", "context"]) == {
        **answer.context,
        "shown": [
            {"item_id": "i5", "position": 0, "source": "precomputed:ease"},
            {"item_id": "i9", "position": 1, "source": "precomputed:ease"},
            {"item_id": "i13", "position": 2, "source": "precomputed:ease"},
        ],
    }
    assert orjson.loads(lake.loc["o1", "context"]) == old.context


def pq_rows(path: Path) -> list[object]:
    import pyarrow.parquet as pq

    return pq.read_table(path).column("event_id").to_pylist()


def test_replayed_uncommitted_batches_count_once(stores: Stores) -> None:
    events = make_events(users=10, per_user=20)
    produce(stores.log, events)
    crashed = stores.worker(poll_records=70)
    consumer = stores.log.consumer("g")
    crashed._consumer = consumer
    for _ in range(2):  # two batches applied to state and history, then a crash: no commit
        assert crashed._process(consumer.poll(70, 0.5), threading.Event())
    consumer.close()
    stats = stores.worker(poll_records=70).run(max_records=len(events))
    assert stats.records == 200 and stats.duplicates == 140 and stats.applied == 60
    states = stores.state.get_many([f"u{u}" for u in range(10)])
    assert {u: s.counters for u, s in states.items()} == expected_counters(events)
    raw = sum(len(pq_rows(p)) for p in stores.lake.glob("*.parquet"))
    assert raw == 200  # the crashed worker wrote no lake file; the replay wrote each row once


def test_lake_files_are_rewritten_not_added_on_replay(tmp_path: Path) -> None:
    events = make_events(users=1, per_user=6, t0=1_700_000_000.0)
    first = LakeWriter(tmp_path, "events")
    for offset, event in enumerate(events):
        first.add(0, 100 + offset, event)
    first.flush()  # then the worker died before committing
    replay = LakeWriter(tmp_path, "events")
    for offset, event in enumerate(events[:2]):  # the replay polls a shorter first batch
        replay.add(0, 100 + offset, event)
    replay.flush()
    for offset, event in enumerate(events[2:], start=2):
        replay.add(0, 100 + offset, event)
    replay.flush()
    rows = [r for p in sorted(tmp_path.glob("*.parquet")) for r in pq_rows(p)]
    assert sorted(rows) == sorted(e.event_id for e in events)


def test_poison_messages_go_to_the_dead_letter_topic(stores: Stores) -> None:
    good = make_events(users=3, per_user=5)
    produce(stores.log, good[:7])
    bad = [
        ("u1", b"{not json"),
        ("u1", orjson.dumps({"user_id": "u1", "item_id": "x", "type": "teleport"})),
        ("someone-else", good[0].model_copy(update={"event_id": "k"}).to_json()),
    ]
    stores.log.append(bad)
    produce(stores.log, good[7:])
    worker = stores.worker()
    stats = worker.run(max_records=len(good) + len(bad))
    assert stats.dead_letters == 3 and stats.applied == len(good)
    consumer = stores.log.consumer("dlq-reader", topic=worker.dead_letter_topic)
    letters = [orjson.loads(r.value) for r in consumer.poll(100, 0.5)]
    consumer.close()
    assert sorted(letter["value"] for letter in letters) == sorted(v.decode() for _, v in bad)
    errors = " | ".join(letter["error"] for letter in letters)
    assert "Invalid JSON" in errors and "type" in errors and "is not the user id" in errors
    assert all({"topic", "partition", "offset", "value_b64"} <= set(letter) for letter in letters)
    assert worker.metrics.events.labels("dead_letter")._value.get() == 3


def test_parse_rejects_a_record_without_bytes() -> None:
    record = LogRecord("t", 0, 0, "u1", None, 0)  # type: ignore[arg-type]  # a Kafka tombstone
    assert len(parse([record]).dead) == 1


def test_commit_settings_must_fit_the_dedupe_window(stores: Stores) -> None:
    with pytest.raises(ConfigError, match="dedupe"):
        stores.worker(commit_records=10_000)


def test_worker_stops_on_request_and_commits(stores: Stores) -> None:
    produce(stores.log, make_events(users=2, per_user=5))
    stop = threading.Event()
    worker = stores.worker()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    for _ in range(100):
        if worker.stats.records == 10:
            break
        threading.Event().wait(0.05)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and worker.stats.commits >= 1
    again = stores.worker().run(threading.Event(), max_records=0)
    assert again.records == 0  # everything was committed
    assert again.first_records_at is None  # and nothing arrived to start the clock


class _CountingHistory:
    """The history, recording the size of each append."""

    def __init__(self, inner: EventHistoryStore) -> None:
        self.inner, self.appends = inner, list[int]()

    def append(self, events: list[Event]) -> None:
        self.appends.append(len(events))
        self.inner.append(events)


@pytest.mark.parametrize(
    ("linger_s", "flush_records", "appends"),
    [
        (60, 25, [30, 30, 30, 10]),  # batches of 10 buffered until 25 are; the rest at the end
        (0, 1000, [10] * 10),  # no linger: one append per polled batch
    ],
)
def test_history_appends_are_coalesced_and_written_before_the_commit(
    stores: Stores, linger_s: float, flush_records: int, appends: list[int]
) -> None:
    events = make_events(users=4, per_user=25)
    produce(stores.log, events)
    history = _CountingHistory(stores.history)
    worker = stores.worker(
        history=history,  # type: ignore[arg-type]
        commit_interval_s=60,
        poll_records=10,
        history_linger_s=linger_s,
        history_flush_records=flush_records,
    )
    assert worker.run(max_records=100).records == 100
    assert history.appends == appends
    # The final checkpoint wrote what was still buffered before committing it.
    assert {e.event_id for u in range(4) for e in stores.history.for_user(f"u{u}")} == {
        e.event_id for e in events
    }
    assert stores.worker().run(threading.Event(), max_records=0).records == 0  # all committed


def test_buffered_history_is_written_after_the_linger_while_idle(stores: Stores) -> None:
    produce(stores.log, make_events(users=1, per_user=5))
    history = _CountingHistory(stores.history)
    worker = stores.worker(
        history=history,  # type: ignore[arg-type]
        commit_interval_s=60,
        poll_timeout_s=0.02,
        history_linger_s=0.1,
        history_flush_records=1000,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not history.appends and time.monotonic() < deadline:
            time.sleep(0.01)
        # Written by the linger alone: no checkpoint came (60 s apart) and nothing else arrived.
        assert history.appends == [5] and worker.stats.commits == 0
    finally:
        stop.set()
        thread.join(5)
    assert len(stores.history.for_user("u0")) == 5


def test_metrics_are_served(stores: Stores) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = NearlineMetrics()
    metrics.serve(port, host="127.0.0.1")
    metrics.count_events(5)
    metrics.set_partitions([0, 1], {0: 3})
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name in (
        "recsys_nearline_lag_records",
        "recsys_nearline_events_per_second",
        "recsys_nearline_batch_seconds",
        "recsys_nearline_freshness_seconds",
        "recsys_nearline_events_total",
    ):
        assert name in text


def test_fresh_candidates_explain_themselves() -> None:
    vectors = np.eye(6, dtype=np.float32)
    vectors[3] = [0.9, 0.1, 0, 0, 0, 0]  # near item a
    vectors[4] = [0, 0.8, 0, 0, 0, 0.2]  # near item b
    embeddings = Embeddings(["a", "b", "c", "a2", "b2", "f"], vectors)
    index = build_index(vectors, "flat")
    state = UserState("u1", recent_items=["b", "a", "b", "unknown"])
    found = fresh_candidates(state, embeddings, index, k=3)
    assert [c.item_id for c in found][:2] == ["a2", "b2"] or [c.item_id for c in found][:2] == [
        "b2",
        "a2",
    ]
    by_item = {c.item_id: c for c in found}
    assert by_item["a2"].because == "a" and by_item["b2"].because == "b"
    assert not {"a", "b"} & set(by_item)  # seen items never come back
    assert FreshCandidates(embeddings, index)(UserState("cold"), k=5) == []


def test_api_accepts_one_event_or_a_batch(stores: Stores) -> None:
    with TestClient(create_app(stores.log)) as client:
        one = client.post("/v1/events", json={"user_id": "u1", "item_id": "i1", "type": "play"})
        assert one.status_code == 202
        assert one.json()["accepted"] == 1 and len(one.json()["event_ids"]) == 1
        batch = [e.model_dump(mode="json") for e in make_events(users=2, per_user=3)]
        many = client.post("/v1/events", json=batch)
        assert many.status_code == 202
        assert many.json()["event_ids"] == [e["event_id"] for e in batch]
    consumer = stores.log.consumer("api-check")
    records = consumer.poll(100, 0.5)
    consumer.close()
    assert len(records) == 7 and all(Event.from_json(r.value).user_id == r.key for r in records)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "body: Invalid JSON"),
        (b'{"user_id": "u1", "type": "play"}', "item_id: Field required"),
        (
            b'[{"user_id": "u1", "item_id": "i", "type": "play"}, {"user_id": "u 2", "item_id": "i", "type": "play"}]',
            "events[1].user_id: String should match pattern",
        ),
        (b'{"user_id": "u1", "item_id": "i", "type": "zap"}', "type: Input should be"),
        (b"[]", "empty list"),
    ],
)
def test_api_rejects_bad_bodies_with_a_message(stores: Stores, body: bytes, message: str) -> None:
    with TestClient(create_app(stores.log)) as client:
        response = client.post(
            "/v1/events", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert message in response.json()["detail"]


class _TimesOutAfterWriting:
    """Applies the batch, then fails, as a store whose reply was lost would (first call only)."""

    def __init__(self, inner: UserStateStore) -> None:
        self.inner, self.calls = inner, 0
        self.dedupe_window = inner.dedupe_window

    def apply_events(self, events: list[object], half_life_s: float) -> int:
        self.calls += 1
        applied = self.inner.apply_events(events, half_life_s)  # type: ignore[arg-type]
        if self.calls == 1:
            raise TimeoutError("reply lost")
        return applied


class _FailsTwice:
    def __init__(self, inner: EventHistoryStore) -> None:
        self.inner, self.calls = inner, 0

    def append(self, events: list[Event]) -> None:
        self.calls += 1
        if self.calls <= 2:
            raise ConnectionError("history down")
        self.inner.append(events)


def test_failed_writes_are_retried_and_still_count_once(stores: Stores) -> None:
    events = make_events(users=4, per_user=5)
    produce(stores.log, events[:10])
    stores.log.append([("u1", b"{bad")])
    produce(stores.log, events[10:])
    state, history = _TimesOutAfterWriting(stores.state), _FailsTwice(stores.history)
    worker = Worker(
        stores.log,
        state,  # type: ignore[arg-type]
        history,  # type: ignore[arg-type]
        LakeWriter(stores.lake, stores.log.topic),
        config=WorkerConfig(group_id="g", max_backoff_s=0.05),
    )
    stats = worker.run(max_records=21)
    # The lost reply hid that the first attempt applied them: the retry counts them as
    # duplicates. What matters is the state: each event counted once.
    assert (stats.applied + stats.duplicates, stats.dead_letters) == (20, 1)
    assert state.calls >= 2 and history.calls >= 3
    states = stores.state.get_many([f"u{u}" for u in range(4)])
    assert {u: s.counters for u, s in states.items()} == expected_counters(events)
    assert len(stores.history.for_user("u2", limit=100)) == 5
    consumer = stores.log.consumer("dlq", topic=worker.dead_letter_topic)
    assert len(consumer.poll(100, 0.5)) == 1  # sent once although its batch was retried
    consumer.close()


def assert_same_state(before: dict[str, UserState], after: dict[str, UserState]) -> None:
    """The same users, with the same counters, recent items, last activity and session
    vector (to float precision)."""
    assert sorted(after) == sorted(before)
    for user, old in before.items():
        new = after[user]
        assert (new.counters, new.recent_items, new.last_active) == (
            old.counters,
            old.recent_items,
            old.last_active,
        )
        assert old.session_vector is not None and new.session_vector is not None
        np.testing.assert_allclose(new.session_vector, old.session_vector, rtol=1e-5)


def test_state_rebuilt_from_history_equals_the_state_the_worker_wrote(stores: Stores) -> None:
    """The state lost (a new, empty store) and rebuilt from the history: the same counters,
    recent items, last activity and session vector; a second rebuild changes nothing."""
    from nearline.rebuild import rebuild_state

    events = make_events(users=12, per_user=25)
    produce(stores.log, events)
    stores.worker().run(max_records=len(events))
    users = sorted({e.user_id for e in events})
    before = stores.state.get_many(users)

    lost = open_user_state("memory://rebuilt", ttl_s=3600, recent_cap=50)
    vectors = LiveItemVectors(stores.registry).current()
    stats = rebuild_state(stores.history, lost, vectors=vectors, half_life_s=1800.0, batch_users=5)
    assert (stats.users, stats.events, stats.applied) == (12, 300, 300)
    assert_same_state(before, lost.get_many(users))
    again = rebuild_state(stores.history, lost, vectors=vectors, half_life_s=1800.0)
    assert again.applied == 0  # idempotent on event_id
    only = rebuild_state(stores.history, lost, vectors=vectors, half_life_s=1800.0, users=["u3"])
    assert (only.users, only.events) == (1, 25)
    lost.close()


def test_rebuild_after_the_worker_wrote_to_the_emptied_state_gives_the_same_state(
    stores: Stores,
) -> None:
    """Redis restarted empty and the worker went on: the newest events are in the state
    before the rebuild replays the older ones behind them. The result is the state an
    unbroken run wrote: recent items in time order, nothing counted twice."""
    from nearline.rebuild import rebuild_state
    from nearline.worker import state_events

    events = make_events(users=6, per_user=30)
    produce(stores.log, events)
    stores.worker().run(max_records=len(events))
    users = sorted({e.user_id for e in events})
    before = stores.state.get_many(users)

    lost = open_user_state("memory://restarted", ttl_s=3600, recent_cap=50)
    vectors = LiveItemVectors(stores.registry).current()
    newest = [e for e in events if e.timestamp >= events[20].timestamp]  # after the restart
    lost.apply_events(state_events(newest, vectors), half_life_s=1800.0)
    stats = rebuild_state(stores.history, lost, vectors=vectors, half_life_s=1800.0)
    assert (stats.events, stats.applied) == (180, 180 - len(newest))
    assert_same_state(before, lost.get_many(users))
    lost.close()


def test_a_neighbour_table_answers_exactly_what_the_index_does() -> None:
    """Fresh candidates read from the table kept at load are the index's own answers, bit
    for bit, for any seeds, seen items and size asked; past its width the index answers."""
    rng = np.random.default_rng(3)
    n = 700
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    vectors[5] = vectors[4]  # a tie: two items with one vector
    embeddings = Embeddings([f"i{j}" for j in range(n)], vectors)
    index = build_index(vectors, "flat")
    searched = FreshCandidates(embeddings, index)
    table = FreshCandidates(embeddings, index, table_width=40)
    assert searched.table is None and table.table is not None
    assert table.table[0].shape == (n, 40)
    for trial in range(300):
        seeds = rng.choice(n, int(rng.integers(0, 12)), replace=False)
        if trial % 7 == 0 and len(seeds):
            seeds[0] = 4  # the tie's items among the seeds and their neighbours
        seen = np.unique(np.concatenate([seeds, rng.choice(n, int(rng.integers(0, 5)))]))
        k = int(rng.integers(1, 45))  # past the width (40) too: then the index answers
        got = table.search(seeds, seen, k)
        want = searched.search(seeds, seen, k)
        for a, b in zip(got, want, strict=True):
            assert np.array_equal(a, b), (trial, len(seeds), len(seen), k)
