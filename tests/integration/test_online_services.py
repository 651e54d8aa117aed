"""The online API over real Redis, Cassandra and Kafka, served by uvicorn on a real port:
the full blend, impressions on Kafka, answers on time with Redis or Cassandra gone or
stalled (and recovery after), and a bundle swap under concurrent requests.

"Stopped" never touches the shared services: Redis is a ``redis-server`` of this test's
own that it kills, Cassandra is a TCP proxy of this test's own that it stalls and closes
(and a port where nothing listens, for an API that starts without Cassandra).
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from nearline.api import router as events_router
from online.app import create_app
from shared.events import Event, EventType
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage.factory import open_candidates, open_event_log, open_user_state
from shared.storage.user_state import StateEvent
from tests.conftest import CASSANDRA_URL, KAFKA_URL, REDIS_URL, unique
from tests.unit.test_online_helpers import candidate_rows, make_bundle, publish_candidates

pytestmark = [pytest.mark.redis, pytest.mark.cassandra, pytest.mark.kafka, pytest.mark.timeout(300)]
BUDGET_MS = 80.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An app served by uvicorn from a thread, on a port of its own."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "the API did not start in 60 s"
            assert self.thread.is_alive(), "the API exited during start-up"
            time.sleep(0.05)
        self.client = httpx.Client(base_url=self.url, timeout=10)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)


class TcpProxy:
    """Forwards a local port to a target; ``close()`` drops it like a dead server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.conns: list[socket.socket] = []
        self.closed = False
        self.flowing = threading.Event()  # cleared: bytes are held back (a stalled server)
        self.flowing.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.flowing.set()
        self.closed = True
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, cassandra_admin: Any) -> Iterator[Settings]:
    """A bundle, its candidates in a keyspace of our own, state for u0 in a Redis namespace
    of our own, and a Kafka topic of our own."""
    home = tmp_path_factory.mktemp("online-services")
    keyspace = unique("recsys_online")
    settings = Settings(
        home=home,
        registry_url=f"file://{home}/models",
        user_state_url=f"{REDIS_URL}?namespace={unique('online')}",
        candidates_url=f"{CASSANDRA_URL.rstrip('/')}/{keyspace}",
        history_url=f"{CASSANDRA_URL.rstrip('/')}/{keyspace}",
        event_log_url=f"{KAFKA_URL.rstrip('/')}/{unique('online_events')}",
    )
    registry = ModelRegistry(settings.registry_url)
    version = make_bundle(registry)
    registry.promote(version)
    cands = open_candidates(settings.candidates_url)
    publish_candidates(cands, version, candidate_rows())
    cands.close()
    log = open_event_log(settings.event_log_url)
    log.init_schema()
    log.close()
    seed_state(settings.user_state_url)
    yield settings
    cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def seed_state(url: str) -> None:
    state = open_user_state(url, ttl_s=600, recent_cap=50)
    events = [StateEvent(f"e{j}", "u0", i, "play", 1000.0 + j) for j, i in enumerate(["i1", "i5"])]
    state.apply_events(events, half_life_s=600)
    state.close()


def online(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` (the stores, the registry) with the online fields these tests use."""
    values: dict[str, Any] = {"device": "cpu", "budget_ms": BUDGET_MS, "reload_interval_s": 3600}
    return Settings(**(settings.model_dump() | values | overrides))


def kinds(body: dict[str, Any]) -> set[str]:
    return {s.partition(":")[0] for item in body["items"] for s in item["sources"]}


def timed_gets(client: httpx.Client, path: str, n: int) -> tuple[list[dict[str, Any]], list[float]]:
    bodies, seconds = [], []
    for _ in range(n):
        started = time.perf_counter()
        reply = client.get(path)
        seconds.append(time.perf_counter() - started)
        assert reply.status_code == 200, reply.text
        bodies.append(reply.json())
    return bodies, seconds


def test_full_blend_on_real_stores_and_impressions_on_kafka(world: Settings) -> None:
    with Served(create_app(online(world), routers=[events_router])) as client:
        assert client.get("/readyz").json()["ready"]
        bodies, _ = timed_gets(client, "/v1/users/u0/recommendations?k=10", 5)
        body = bodies[-1]
        assert not body["degraded"], body["failures"]
        assert {"precomputed", "fresh", "trending"} <= kinds(body)
        assert {i["item_id"] for i in body["items"]}.isdisjoint({"i1", "i5"})
        assert max(b["timings_ms"]["total"] for b in bodies[1:]) < BUDGET_MS
        posted = client.post("/v1/events", json={"user_id": "u0", "item_id": "i9", "type": "click"})
        assert posted.status_code == 202
    # The server has stopped: its impression logger sent what was queued and flushed.
    answers = {b["request_id"]: b for b in bodies}
    log = open_event_log(world.event_log_url)
    consumer = log.consumer(unique("check"))
    found: list[Event] = []

    def impression_ids() -> list[str]:
        return [str(e.context.get("request_id")) for e in found if e.type is EventType.IMPRESSION]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        any(e.type is EventType.CLICK for e in found) and set(answers) <= set(impression_ids())
    ):
        found += [Event.from_json(r.value) for r in consumer.poll(500, 1.0)]
    consumer.close()
    log.close()
    ours = [e for e in found if e.context.get("request_id") in answers]  # the module's topic
    assert sorted(str(e.context["request_id"]) for e in ours) == sorted(answers)  # one each
    for event in ours:
        items = answers[str(event.context["request_id"])]["items"]
        assert event.context["arm"] == "control" and event.shown is not None
        assert [(s.item_id, s.position, s.source) for s in event.shown] == [
            (i["item_id"], p, i["sources"][0]) for p, i in enumerate(items)
        ]
    assert any(e.type is EventType.CLICK for e in found)


def test_redis_stopped_answers_on_time_degraded(world: Settings, tmp_path: Path) -> None:
    port = free_port()
    redis = subprocess.Popen(
        [  # noqa: S607 (Debian's redis-server on the PATH, as the launcher finds it)
            "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                seed_state(url)
                break
            except Exception:
                assert time.monotonic() < deadline, "own redis-server did not start"
                time.sleep(0.1)
        settings = world.model_copy(update={"user_state_url": url})
        with Served(create_app(online(settings))) as client:
            warm, _ = timed_gets(client, "/v1/users/u0/recommendations", 2)
            assert not warm[-1]["degraded"] and "fresh" in kinds(warm[-1])
            redis.kill()
            redis.wait(10)
            bodies, seconds = timed_gets(client, "/v1/users/u0/recommendations", 10)
            assert client.get("/readyz").status_code == 503
    finally:
        if redis.poll() is None:
            redis.kill()
    for body in bodies:
        assert body["degraded"] and "user_state" in body["failures"]
        assert "precomputed" in kinds(body) and len(body["items"]) == 10
        assert body["timings_ms"]["total"] < BUDGET_MS
    assert statistics.median(seconds) < BUDGET_MS / 1000


def test_cassandra_unreachable_at_start_stalled_then_lost_while_serving(world: Settings) -> None:
    nowhere = f"cassandra://127.0.0.1:{free_port()}/nothing"
    settings = world.model_copy(update={"candidates_url": nowhere})
    with Served(create_app(online(settings))) as client:  # starts without Cassandra
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "unreachable" in ready.json()["checks"]["candidates"]
        bodies, seconds = timed_gets(client, "/v1/users/u0/recommendations", 5)
    for body in bodies:
        assert body["degraded"] and "unavailable" in body["failures"]["candidates"]
        assert {"fresh", "popular"} <= kinds(body) and "precomputed" not in kinds(body)
        assert body["timings_ms"]["total"] < BUDGET_MS
    assert statistics.median(seconds) < BUDGET_MS / 1000

    host, _, port = CASSANDRA_URL.removeprefix("cassandra://").rstrip("/").partition(":")
    proxy = TcpProxy((host, int(port or 9042)))
    keyspace = world.candidates_url.rsplit("/", 1)[1]
    via_proxy = world.model_copy(
        update={"candidates_url": f"cassandra://127.0.0.1:{proxy.port}/{keyspace}"}
    )
    app = create_app(online(via_proxy, candidates_cache_ttl_s=0))
    try:
        with Served(app) as client:
            before, _ = timed_gets(client, "/v1/users/u1/recommendations", 2)
            assert "precomputed" in kinds(before[-1]) and not before[-1]["degraded"]
            proxy.flowing.clear()  # stalled: connections open, no answers
            stalled, seconds = timed_gets(client, "/v1/users/u1/recommendations", 10)
            assert all("candidates" in b["failures"] for b in stalled)
            assert any("circuit open" in b["failures"]["candidates"] for b in stalled)
            assert max(b["timings_ms"]["total"] for b in stalled) < BUDGET_MS
            assert statistics.median(seconds) < BUDGET_MS / 1000
            proxy.flowing.set()  # back: answers resume once the breaker lets a probe through
            deadline = time.monotonic() + 30
            while client.get("/v1/users/u1/recommendations").json()["degraded"]:
                assert time.monotonic() < deadline, "no recovery within 30 s of the stall"
                time.sleep(0.2)
            proxy.close()
            bodies, seconds = timed_gets(client, "/v1/users/u1/recommendations", 10)
            assert client.get("/healthz").status_code == 200
    finally:
        proxy.close()
    for body in bodies:
        assert body["degraded"] and "candidates" in body["failures"]
        assert body["timings_ms"]["total"] < BUDGET_MS and body["items"]
    assert statistics.median(seconds) < BUDGET_MS / 1000


def test_bundle_swap_under_concurrent_requests_fails_none(world: Settings) -> None:
    registry = ModelRegistry(world.registry_url)
    first = registry.live()
    assert first is not None
    newer = make_bundle(registry, seed=5)
    stop = threading.Event()
    with Served(create_app(online(world, reload_interval_s=0.2))) as client:

        def hammer(user: str) -> list[tuple[int, str]]:
            out = []
            with httpx.Client(base_url=str(client.base_url), timeout=10) as own:
                while not stop.is_set():
                    reply = own.get(f"/v1/users/{user}/recommendations")
                    bundle = reply.json().get("bundle", "") if reply.status_code == 200 else ""
                    out.append((reply.status_code, bundle))
            return out

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(hammer, f"u{j}") for j in range(4)]
            time.sleep(1.0)
            registry.promote(newer)
            deadline = time.monotonic() + 30
            while client.get("/v1/items/i1").json()["bundle"] != newer:
                assert time.monotonic() < deadline, "no swap within 30 s"
                time.sleep(0.1)
            time.sleep(1.0)
            registry.rollback()  # back, also under load
            while client.get("/v1/items/i1").json()["bundle"] != first.version:
                assert time.monotonic() < deadline, "no swap back within 30 s"
                time.sleep(0.1)
            time.sleep(0.5)
            stop.set()
            results = [r for f in futures for r in f.result()]
    assert results and all(status == 200 for status, _ in results)
    served = {bundle for _, bundle in results}
    assert served == {first.version, newer}
