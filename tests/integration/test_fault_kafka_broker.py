"""The Kafka broker stopped and restarted under a stream into ``POST /v1/events``.

A broker of the test's own (real Apache Kafka, started by the project's launcher on free
ports, so the suite's shared broker is never touched) takes a stream of events through the
events API. It is stopped mid-stream and started again on the same data. Every event the
API accepted (202) must reach the user state exactly once through a nearline worker; every
event sent while the broker was down must be refused (503 with a reason) within the
producer's bounded wait, never accepted and lost.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nearline.api import create_app
from nearline.embeddings import LiveItemVectors
from nearline.lake import LakeWriter
from nearline.worker import Worker, WorkerConfig
from recsys.services.kafka import Kafka, KafkaConfig
from recsys.services.manager import down_one, up_one
from shared.events import Event, EventType
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage.event_log import EventLog
from shared.storage.factory import open_event_log, open_history, open_user_state
from tests.unit.test_nearline import expected_counters, write_bundle

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]
# The producer's bound on one append (shared/storage/kafka_log.py: connect 5 s, send 10 s),
# with room for a loaded machine.
REFUSAL_BOUND_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Kafka]:
    service = Kafka(
        tmp_path / "services",
        Settings().cache_dir,
        KafkaConfig(port=_free_port(), controller_port=_free_port()),
    )
    up_one(service)
    yield service
    down_one(service, purge=True)


def _event(i: int) -> Event:
    kind = (EventType.PLAY, EventType.CLICK, EventType.SKIP)[i % 3]
    return Event(
        event_id=f"fault-{i}",
        user_id=f"u{i % 9}",
        item_id=f"i{i % 40}",
        type=kind,
        timestamp=1_700_000_000.0 + i,
    )


def test_broker_stop_and_restart_loses_and_doubles_nothing(broker: Kafka, tmp_path: Path) -> None:
    url = f"kafka://127.0.0.1:{broker.config.port}/fault-events"
    log = open_event_log(url)
    log.init_schema(partitions=2)
    accepted: list[Event] = []
    refused: list[tuple[Event, float, str]] = []

    def send(client: TestClient, i: int) -> None:
        event = _event(i)
        started = time.monotonic()
        reply = client.post("/v1/events", json=event.model_dump(mode="json"))
        if reply.status_code == 202:
            accepted.append(event)
        else:
            assert reply.status_code == 503, reply.text
            refused.append((event, time.monotonic() - started, reply.json()["detail"]))

    with TestClient(create_app(log, Settings(home=tmp_path))) as client:
        for i in range(300):
            send(client, i)
        assert len(accepted) == 300 and not refused
        down_one(broker)
        for i in range(300, 304):
            send(client, i)
        assert len(refused) == 4, "an event was accepted while the broker was down"
        up_one(broker)
        deadline = time.monotonic() + 60
        i = 304
        while len(accepted) < 600 and time.monotonic() < deadline:
            send(client, i)  # the producer reconnects: a 503 meanwhile is a refusal too
            i += 1
        assert len(accepted) == 600, f"the API did not take events again: {refused[-1:]}"

    assert all(seconds < REFUSAL_BOUND_S for _, seconds, _ in refused), refused
    assert all("unavailable" in detail or "Kafka" in detail for _, _, detail in refused)

    _check_state(log, tmp_path, accepted, {e.event_id for e, _, _ in refused})


def _check_state(
    log: EventLog, tmp_path: Path, accepted: list[Event], refused_ids: set[str]
) -> None:
    """Every accepted event in the state exactly once, no refused one."""
    write_bundle(tmp_path / "models")
    state = open_user_state("memory://fault-state", ttl_s=3600, recent_cap=50)
    history = open_history("memory://fault-history")
    worker = Worker(
        log,
        state,
        history,
        LakeWriter(tmp_path / "lake", log.topic),
        vectors=LiveItemVectors(ModelRegistry(f"file://{tmp_path}/models")),
        config=WorkerConfig(group_id="fault-check"),
    )
    # Until every accepted event is applied (a producer retry may have written one twice:
    # the worker reads it again and counts it once), or a minute.
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + 60
    while worker.stats.applied < len(accepted) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    runner.join(30)
    try:
        assert worker.stats.applied == len(accepted)
        assert worker.stats.records == worker.stats.applied + worker.stats.duplicates
        users = sorted({e.user_id for e in accepted})
        counters = {u: s.counters for u, s in state.get_many(users).items()}
        assert counters == expected_counters(accepted)
        stored = {e.event_id for u in users for e in history.for_user(u, limit=10_000)}
        assert stored == {e.event_id for e in accepted} and not stored & refused_ids
    finally:
        for store in (log, state, history):
            store.close()
