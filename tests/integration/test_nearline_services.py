"""The nearline tier against real Kafka, Redis and Cassandra.

Workers run in-process where the test is about what they write, and as `recsys nearline
run` subprocesses where it is about processes: SIGKILL and restart, two members of a group.
Every test has its own topic, consumer group, Redis namespace, keyspace and lake.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from nearline.api import create_app
from nearline.embeddings import LiveItemVectors
from nearline.lake import LakeWriter, read_lake
from nearline.worker import Worker, WorkerConfig
from shared.events import Event, EventType
from shared.registry import ModelRegistry
from shared.storage.event_log import EventLog
from shared.storage.factory import open_event_log, open_history, open_user_state
from shared.storage.history import EventHistoryStore
from shared.storage.user_state import UserStateStore
from tests.conftest import KAFKA_URL, REDIS_URL, unique
from tests.unit.test_nearline import (
    assert_same_state,
    expected_counters,
    make_events,
    write_bundle,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.cassandra, pytest.mark.timeout(240)]

RECSYS = Path(sys.executable).parent / "recsys"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Real:
    """One test's own topic, namespace, keyspace, lake and bundle, with stores opened."""

    log: EventLog
    state: UserStateStore
    history: EventHistoryStore
    home: Path
    env: dict[str, str]

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    def worker(self, group: str, **config: float) -> Worker:
        return Worker(
            self.log,
            self.state,
            self.history,
            LakeWriter(self.lake, self.log.topic),
            vectors=LiveItemVectors(ModelRegistry(f"file://{self.home}/models")),
            config=WorkerConfig(group_id=group, **config),  # type: ignore[arg-type]
        )

    def spawn(self, *args: str, log: Path | None = None) -> subprocess.Popen[str]:
        """``recsys nearline run``; its output in a pipe (read it at the end), or in ``log``
        for a worker that runs long enough to fill a pipe nobody reads (it would block)."""
        out = subprocess.PIPE if log is None else log.open("w")
        return subprocess.Popen(
            [str(RECSYS), "nearline", "run", *args],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


@pytest.fixture
def real(tmp_path: Path, cassandra_keyspace_url: str) -> Iterator[Real]:
    topic = unique("events")
    log_url = f"{KAFKA_URL.rstrip('/')}/{topic}"
    state_url = f"{REDIS_URL}?namespace={unique('nearline')}"
    log = open_event_log(log_url)
    log.init_schema(partitions=4)
    state = open_user_state(state_url, ttl_s=3600, recent_cap=50)
    history = open_history(cassandra_keyspace_url)
    history.init_schema()
    write_bundle(tmp_path / "models")
    env = {
        **os.environ,
        "RECSYS_HOME": str(tmp_path),
        "RECSYS_EVENT_LOG_URL": log_url,
        "RECSYS_USER_STATE_URL": state_url,
        "RECSYS_HISTORY_URL": cassandra_keyspace_url,
        "RECSYS_CANDIDATES_URL": cassandra_keyspace_url,
        "RECSYS_REGISTRY_URL": f"file://{tmp_path}/models",
        "RECSYS_USER_STATE_TTL_S": "3600",
    }
    yield Real(log, state, history, tmp_path, env)
    for store in (log, state, history):
        store.close()


def produce(log: EventLog, events: list[Event], chunk: int = 2000) -> None:
    for start in range(0, len(events), chunk):
        log.append([(e.user_id, e.to_json()) for e in events[start : start + chunk]])


def counters(state: UserStateStore, users: int) -> dict[str, dict[str, int]]:
    found = state.get_many([f"u{u}" for u in range(users)])
    return {u: s.counters for u, s in found.items()}


def applied(state: UserStateStore, users: int) -> int:
    return sum(sum(c.values()) for c in counters(state, users).values())


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def assert_exactly_once(real: Real, events: list[Event], users: int) -> None:
    assert counters(real.state, users) == expected_counters(events)
    by_user: dict[str, set[str]] = {}
    for e in events:
        by_user.setdefault(e.user_id, set()).add(e.event_id)
    for user, ids in by_user.items():
        stored = [e.event_id for e in real.history.for_user(user, limit=10 * len(ids))]
        assert len(stored) == len(ids) and set(stored) == ids, user
    raw = [
        i
        for p in real.lake.glob("*.parquet")
        for i in pq.read_table(p).column("event_id").to_pylist()
    ]
    assert len(raw) == len(events) and set(raw) == {e.event_id for e in events}


def test_ten_thousand_events_are_reflected_exactly_once(real: Real) -> None:
    events = make_events(users=200, per_user=50)
    produce(real.log, events)
    stats = real.worker(unique("group")).run(max_records=len(events))
    assert (stats.records, stats.applied, stats.duplicates, stats.dead_letters) == (
        10_000,
        10_000,
        0,
        0,
    )
    assert_exactly_once(real, events, users=200)
    u7 = real.state.get("u7")
    assert u7 is not None and u7.session_vector is not None and u7.last_active is not None
    lake = read_lake(real.lake)
    assert len(lake) == 10_000 and set(lake.columns) >= {"user_id", "item_id", "timestamp", "value"}


def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(real: Real) -> None:
    # 20,000 events: at the worker's 5,000-7,000 events/s, the kill after the first 1,000
    # lands seconds before the end (4,000 were sometimes all applied before it landed).
    events = make_events(users=100, per_user=200)
    produce(real.log, events)
    group = unique("group")
    args = ("--group", group, "--poll-records", "200", "--commit-interval", "0.3")
    first = real.spawn(*args)
    try:
        wait_for(lambda: applied(real.state, 100) >= 1000, 60, "the first worker to get going")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    done_before = applied(real.state, 100)
    assert done_before < len(events), "killed too late to test anything"
    second = real.spawn(*args)
    try:
        wait_for(
            lambda: applied(real.state, 100) == len(events), 90, "the restarted worker to finish"
        )
        time.sleep(1.0)  # let a checkpoint pass, then stop it gracefully
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=30)
    assert second.returncode == 0, out
    assert_exactly_once(real, events, users=100)


def test_malformed_messages_go_to_the_dead_letter_topic_while_good_ones_flow(real: Real) -> None:
    good = make_events(users=20, per_user=10)
    bad = [
        ("u1", b"\xff\xfe not even utf-8"),
        ("u2", b'{"user_id": "u2", "item_id": "i1", "type": "teleport"}'),
        ("u3", b'{"user_id": "u3"}'),
        ("u4", b"[]"),
        ("x", good[0].model_copy(update={"event_id": "wrong-key"}).to_json()),
    ]
    produce(real.log, good[:100])
    real.log.append(bad)
    produce(real.log, good[100:])
    worker = real.worker(unique("group"))
    stats = worker.run(max_records=len(good) + len(bad))
    assert (stats.applied, stats.dead_letters) == (len(good), len(bad))
    assert worker.metrics.events.labels("dead_letter")._value.get() == len(bad)
    assert counters(real.state, 20) == expected_counters(good)
    consumer = real.log.consumer(unique("dlq"), topic=worker.dead_letter_topic)
    letters = []
    try:
        for _ in range(40):
            letters += [orjson.loads(r.value) for r in consumer.poll(100, 0.5)]
            if len(letters) >= len(bad):
                break
    finally:
        consumer.close()
    assert len(letters) == len(bad)
    assert {letter["value_b64"] for letter in letters} == {
        __import__("base64").b64encode(v).decode() for _, v in bad
    }
    assert all(letter["error"] and letter["topic"] == real.log.topic for letter in letters)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """Sample name{labels} -> value of a worker's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def assigned(port: int) -> set[str]:
    try:
        samples = scrape(port)
    except OSError:
        return set()
    prefix = 'recsys_nearline_assigned_partitions{partition="'
    return {k[len(prefix) : -2] for k, v in samples.items() if k.startswith(prefix) and v == 1}


def test_two_workers_in_one_group_share_four_partitions(real: Real) -> None:
    group, ports = unique("group"), [free_port(), free_port()]
    workers = [real.spawn("--group", group, "--metrics-port", str(p)) for p in ports]
    try:
        wait_for(
            lambda: (
                all(assigned(p) for p in ports)
                and assigned(ports[0]) | assigned(ports[1]) == {"0", "1", "2", "3"}
                and not assigned(ports[0]) & assigned(ports[1])
            ),
            60,
            "both workers to own partitions",
        )
        events = make_events(users=80, per_user=40)
        produce(real.log, events)
        wait_for(lambda: applied(real.state, 80) == len(events), 90, "all events to be applied")
        key = 'recsys_nearline_events_total{outcome="applied"}'
        per_worker: list[float] = []

        def counted_by_both() -> bool:
            per_worker[:] = [scrape(p).get(key, 0.0) for p in ports]
            return sum(per_worker) == len(events)

        # The state is written before the worker counts the batch: wait for the counters too.
        wait_for(counted_by_both, 30, "both workers' counters to add up")
        assert all(n > 0 for n in per_worker), per_worker
        assert sum(per_worker) == len(events)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [w.communicate(timeout=30)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert counters(real.state, 80) == expected_counters(events)
    assert_exactly_once(real, events, users=80)


def test_the_group_scaled_from_one_worker_to_two_and_back_under_a_stream(real: Real) -> None:
    """Events flow all along while a second worker joins the group (the partitions split
    between the two) and leaves again (the first takes them all back): every event is in
    the state exactly once."""
    group, ports = unique("scale"), [free_port(), free_port()]
    events = make_events(users=80, per_user=150)  # 12,000
    stop = threading.Event()

    def stream() -> None:  # 12,000 events over about 12 s, in chunks of 200
        for start in range(0, len(events), 200):
            if stop.is_set():
                return
            produce(real.log, events[start : start + 200])
            time.sleep(0.2)

    logs = [real.home / "first.log", real.home / "second.log"]
    first = real.spawn("--group", group, "--metrics-port", str(ports[0]), log=logs[0])
    second: subprocess.Popen[str] | None = None
    producer = threading.Thread(target=stream)
    try:
        wait_for(lambda: assigned(ports[0]) == {"0", "1", "2", "3"}, 60, "the first worker")
        producer.start()
        second = real.spawn("--group", group, "--metrics-port", str(ports[1]), log=logs[1])
        wait_for(
            lambda: (
                bool(assigned(ports[0]))
                and bool(assigned(ports[1]))
                and not assigned(ports[0]) & assigned(ports[1])
            ),
            60,
            "the partitions to split between the two workers",
        )
        split = (assigned(ports[0]), assigned(ports[1]))
        time.sleep(2.0)  # the second worker applies some of the stream
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, logs[1].read_text()[-3000:]
        wait_for(
            lambda: assigned(ports[0]) == {"0", "1", "2", "3"}, 60, "the first to take all back"
        )
        producer.join(120)
        wait_for(lambda: applied(real.state, 80) >= len(events), 120, "all events to be applied")
        time.sleep(2.0)  # anything doubled arrives now or never
    finally:
        stop.set()
        if producer.is_alive():
            producer.join(30)
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        first.wait(30)
    assert split[0] | split[1] == {"0", "1", "2", "3"} and split[0] and split[1]
    assert counters(real.state, 80) == expected_counters(events)
    assert_exactly_once(real, events, users=80)


def test_api_produces_to_kafka_and_answers_503_when_it_cannot(real: Real) -> None:
    with TestClient(create_app(real.log)) as client:
        batch = [e.model_dump(mode="json") for e in make_events(users=3, per_user=4)]
        response = client.post("/v1/events", json=batch)
        assert response.status_code == 202 and response.json()["accepted"] == 12
    consumer = real.log.consumer(unique("group"))
    got = []
    try:
        for _ in range(40):
            got += consumer.poll(100, 0.5)
            if len(got) >= 12:
                break
    finally:
        consumer.close()
    assert sorted(Event.from_json(r.value).event_id for r in got) == sorted(
        e["event_id"] for e in batch
    )
    assert all(r.key == Event.from_json(r.value).user_id for r in got)
    assert len({r.partition for r in got if r.key == "u1"}) == 1
    down = open_event_log("kafka://127.0.0.1:1/events")
    one = {"user_id": "u1", "item_id": "i", "type": "play"}
    with TestClient(create_app(down)) as client:
        response = client.post("/v1/events", json=one)
        started = time.monotonic()
        again = client.post("/v1/events", json=one)  # the circuit is open: no 5 s wait
        seconds = time.monotonic() - started
    assert response.status_code == 503
    assert "event log store unreachable at kafka://127.0.0.1:1/events" in response.json()["detail"]
    assert response.headers["retry-after"] == "1"
    assert again.status_code == 503 and again.headers["retry-after"] == "1"
    assert "circuit open after 1 failed appends" in again.json()["detail"]
    assert seconds < 1.0


def test_event_types_all_reach_the_history(real: Real) -> None:
    events = [
        Event(user_id="solo", item_id=f"i{n}", type=t, value=3.5 if t is EventType.RATE else None)
        for n, t in enumerate(EventType)
    ]
    produce(real.log, events)
    real.worker(unique("group")).run(max_records=len(events))
    stored = real.history.for_user("solo")
    assert Counter(e.type for e in stored) == Counter(EventType)
    assert {e.event_id: e for e in stored} == {e.event_id: e for e in events}


def test_state_lost_in_redis_is_rebuilt_from_the_cassandra_history(real: Real) -> None:
    """Redis loses the state (its keys gone, as after a restart without persistence);
    `recsys nearline rebuild-state` replays the Cassandra history into it: the state equals
    the one the worker had written."""
    events = make_events(users=15, per_user=20)
    produce(real.log, events)
    real.worker(unique("rebuild")).run(max_records=len(events))
    users = sorted({e.user_id for e in events})
    before = real.state.get_many(users)
    assert len(before) == 15
    for user in users:
        real.state.delete(user)
    assert not real.state.get_many(users)

    done = subprocess.run(
        [str(RECSYS), "nearline", "rebuild-state", "--json"],
        cwd=ROOT,
        env=real.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = orjson.loads(done.stdout)
    assert (out["users"], out["events"], out["applied"]) == (15, 300, 300)
    assert_same_state(before, real.state.get_many(users))
