"""The online API on embedded stores and a hand-made bundle: blend, bad input, admin,
health, degradation and bundle swaps (no services, no Spark)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from nearline.api import router as events_router
from online.app import create_app
from online.impressions import ImpressionLogger, encode_impression
from online.metrics import OnlineMetrics
from online.recommend import Answer, Recommended
from online.schemas import RecommendationsResponse
from online.stores import StoreSlot
from shared.events import Event, EventType, Shown
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage.candidates import Candidates, CandidateStore, VersionInfo
from shared.storage.event_log import EventLog
from shared.storage.factory import open_candidates, open_event_log, open_user_state
from shared.storage.user_state import StateEvent, UserState, UserStateStore
from tests.unit.test_online_helpers import candidate_rows, make_bundle, publish_candidates

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("online")


@pytest.fixture(scope="module")
def settings(home: Path) -> Settings:
    return Settings(home=home, registry_url=f"file://{home}/models")


@pytest.fixture(scope="module")
def version(settings: Settings) -> str:
    registry = ModelRegistry(settings.registry_url)
    version = make_bundle(registry)
    registry.promote(version)
    return version


@pytest.fixture(scope="module")
def stores(version: str) -> Iterator[tuple[Any, Any, Any]]:
    state = open_user_state("memory://", ttl_s=3600, recent_cap=50)
    state.init_schema()
    cands = open_candidates("memory://")
    publish_candidates(cands, version, candidate_rows())
    log = open_event_log("memory://")
    log.init_schema()
    state.apply_events(
        [
            StateEvent(f"e{j}", "u0", item, "play", 1000.0 + j)
            for j, item in enumerate(["i1", "i60", "i5"])
        ],
        half_life_s=600,
    )
    yield state, cands, log
    for store in (state, cands, log):
        store.close()


def online_settings(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` (the stores, the registry) with the online fields these tests use."""
    values: dict[str, Any] = {"admin_token": TOKEN, "reload_interval_s": 3600, "device": "cpu"}
    return Settings(**(settings.model_dump() | values | overrides))


def build(settings: Settings, stores: tuple[Any, Any, Any], **overrides: Any) -> FastAPI:
    state, cands, log = stores
    user_state = overrides.pop("user_state", None) or state
    return create_app(
        online_settings(settings, **overrides),
        user_state=user_state,
        candidates=cands,
        event_log=log,
        routers=[events_router],
    )


@pytest.fixture(scope="module")
def client(settings: Settings, stores: tuple[Any, Any, Any]) -> Iterator[TestClient]:
    with TestClient(build(settings, stores)) as client:
        yield client


def test_full_blend_with_every_source_visible(client: TestClient, version: str) -> None:
    reply = client.get("/v1/users/u0/recommendations", params={"k": 10})
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    # The handler writes the JSON itself: it must still be exactly the documented schema.
    assert RecommendationsResponse.model_validate(body).model_dump(mode="json") == body
    assert body["user_id"] == "u0" and body["bundle"] == version and body["arm"] == "control"
    assert not body["degraded"] and body["failures"] == {}
    items = body["items"]
    assert len(items) == 10
    kinds = {s.partition(":")[0] for item in items for s in item["sources"]}
    assert {"precomputed", "fresh", "trending"} <= kinds
    assert {i["item_id"] for i in items}.isdisjoint({"i1", "i60", "i5"})  # seen
    fresh = [i for i in items if "fresh" in i["sources"]]
    assert all(i["reason"].startswith("because you watched Movie i") for i in fresh)
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    assert {"user_state", "candidates", "rank", "total"} <= set(body["timings_ms"])
    assert len({i["item_id"] for i in items}) == 10


def test_exclude_and_genre_cap(client: TestClient) -> None:
    first = client.get("/v1/users/u0/recommendations", params={"k": 6}).json()["items"]
    dropped = [first[0]["item_id"], first[1]["item_id"]]
    again = client.get(
        "/v1/users/u0/recommendations", params={"k": 6, "exclude": ",".join(dropped)}
    ).json()["items"]
    assert not {i["item_id"] for i in again} & set(dropped)
    genres = [int(i["item_id"][1:]) % 4 for i in again]
    assert max(genres.count(g) for g in set(genres)) <= 3  # genre_cap 0.5 of 6


def test_unknown_user_gets_popular_with_cold_start_reason(client: TestClient) -> None:
    body = client.get("/v1/users/nobody-42/recommendations", params={"k": 5}).json()
    assert RecommendationsResponse.model_validate(body).model_dump(mode="json") == body
    assert not body["degraded"]
    assert body["items"][0]["item_id"] == "i0"
    assert all("popular" in i["sources"] or "trending" in i["sources"] for i in body["items"])
    assert any("new here" in i["reason"] for i in body["items"])


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/users/u0/recommendations", {"k": 0}),
        ("/v1/users/u0/recommendations", {"k": 101}),
        ("/v1/users/u0/recommendations", {"k": "ten"}),
        ("/v1/users/u0/recommendations", {"surface": "Bad Surface"}),
        ("/v1/users/bad%20user/recommendations", {}),
        ("/v1/items/i1/similar", {"k": 0}),
    ],
)
def test_bad_parameters_are_422(client: TestClient, path: str, params: dict[str, Any]) -> None:
    assert client.get(path, params=params).status_code == 422


def test_malformed_event_body_is_422_and_good_one_202(client: TestClient) -> None:
    assert client.post("/v1/events", content=b"{not json").status_code == 422
    assert client.post("/v1/events", json={"user_id": "u0"}).status_code == 422
    ok = client.post("/v1/events", json={"user_id": "u0", "item_id": "i3", "type": "play"})
    assert ok.status_code == 202


def test_items_and_similar(client: TestClient) -> None:
    item = client.get("/v1/items/i4").json()
    assert item["title"] == "Movie i4" and item["genres"] == ["Drama"]
    similar = client.get("/v1/items/i4/similar", params={"k": 5}).json()["items"]
    assert len(similar) == 5 and "i4" not in {s["item_id"] for s in similar}
    # clustered vectors: neighbours share the genre (index mod 4)
    assert sum(int(s["item_id"][1:]) % 4 == 0 for s in similar) >= 4
    for path in ("/v1/items/nope", "/v1/items/nope/similar"):
        missing = client.get(path)
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_health_ready_metrics_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"]
    client.get("/v1/users/u0/recommendations")
    text = client.get("/metrics").text
    for name in (
        "recsys_online_stage_seconds_bucket",
        'recsys_online_candidates_total{source="fresh"}',
        "recsys_online_request_seconds",
    ):
        assert name in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/users/{user_id}/recommendations",
        "/v1/items/{item_id}",
        "/v1/items/{item_id}/similar",
        "/v1/events",
        "/v1/admin/reload",
    } <= set(paths)


def logged_events(log: EventLog, group: str, until: Callable[[list[Event]], bool]) -> list[Event]:
    """Every event on the log, read by a fresh group until ``until`` holds (or 5 s), then
    one more idle poll: a second event for the same answer would be there by then."""
    consumer = log.consumer(group)
    events: list[Event] = []
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline and not until(events):
            events += [Event.from_json(r.value) for r in consumer.poll(100, 0.5)]
        events += [Event.from_json(r.value) for r in consumer.poll(100, 0.3)]
    finally:
        consumer.close()
    return events


def test_one_impression_event_per_answer_with_the_list_shown(
    client: TestClient, stores: tuple[Any, Any, Any], version: str
) -> None:
    _, _, log = stores
    body = client.get(
        "/v1/users/u3/recommendations", params={"k": 7, "surface": "impressions_test"}
    ).json()
    rid = body["request_id"]

    def of_answer(events: list[Event]) -> list[Event]:
        return [e for e in events if e.context.get("request_id") == rid]

    found = of_answer(logged_events(log, "impressions-test", lambda got: bool(of_answer(got))))
    assert len(found) == 1  # one event for the answer, not one per item
    event = found[0]
    assert event.type is EventType.IMPRESSION and event.user_id == "u3"
    assert event.shown is not None
    assert [(s.item_id, s.position, s.source) for s in event.shown] == [
        (item["item_id"], position, item["sources"][0])
        for position, item in enumerate(body["items"])
    ]
    assert len(event.shown) == 7 and event.item_id == body["items"][0]["item_id"]
    assert event.context == {
        "arm": "control",
        "bundle": version,
        "surface": "impressions_test",
        "request_id": rid,
        "degraded": False,
    }


def answer_of(user: str, k: int, **fields: Any) -> Answer:
    items = [
        Recommended(f"i{j}", 1.0 - j / 100, ["precomputed:ease+als", "fresh"], f"because {j}")
        for j in range(k)
    ]
    values: dict[str, Any] = {
        "user_id": user,
        "items": items,
        "bundle": "v7",
        "arm": "blend",
        "degraded": True,
        "failures": {"user_state": "timeout"},
        "timings_ms": {"total": 3.0},
        "surface": "home",
    }
    return Answer(**(values | fields))


def test_encoded_impression_is_exactly_the_events_own_json() -> None:
    """The API writes the event's JSON without building the model; it must be what the
    model validates, and byte for byte what the model itself would write."""
    answer = answer_of("u9", 10)
    raw = encode_impression(answer)
    event = Event.from_json(raw)  # valid
    model = Event(
        event_id=event.event_id,
        timestamp=event.timestamp,
        user_id="u9",
        item_id="i0",
        type=EventType.IMPRESSION,
        context={
            "arm": "blend",
            "bundle": "v7",
            "surface": "home",
            "request_id": answer.request_id,
            "degraded": True,
        },
        shown=tuple(
            Shown(item_id=f"i{j}", position=j, source="precomputed:ease+als") for j in range(10)
        ),
    )
    assert model.to_json() == raw
    assert abs(event.timestamp - time.time()) < 5


def logger_on(log: EventLog, **options: Any) -> tuple[ImpressionLogger, OnlineMetrics]:
    executor = ThreadPoolExecutor(1)
    slot: StoreSlot[EventLog] = StoreSlot("event_log", lambda: log, executor, 1.0)
    assert slot.try_open()
    executor.shutdown()
    metrics = OnlineMetrics()
    return ImpressionLogger(slot, metrics, **options), metrics


def dropped(metrics: OnlineMetrics) -> float:
    value = metrics.registry.get_sample_value("recsys_online_impressions_dropped_total")
    return value or 0.0


def test_close_delivers_every_queued_impression() -> None:
    log = open_event_log("memory://")
    log.init_schema()
    # The sender lingers a minute after the first event: only close() can send these.
    logger, metrics = logger_on(log, linger_s=60.0)
    answers = [answer_of(f"u{n}", 1 + n % 5) for n in range(50)]
    for answer in answers:
        logger.log(answer)
    time.sleep(0.1)
    assert logger.pending == 50
    started = time.monotonic()
    logger.close()
    assert time.monotonic() - started < 5  # close cut the linger short
    assert logger.pending == 0 and dropped(metrics) == 0
    events = logged_events(log, "close-test", lambda got: len(got) >= 50)
    assert sorted(e.context["request_id"] for e in events) == sorted(a.request_id for a in answers)
    assert all(e.shown is not None and len(e.shown) == 1 + int(e.user_id[1:]) % 5 for e in events)
    logger.log(answers[0])  # closed: dropped and counted, not queued
    assert logger.pending == 0 and dropped(metrics) == 1
    log.close()


def test_a_full_backlog_drops_and_counts_without_blocking() -> None:
    log = open_event_log("memory://")
    log.init_schema()
    logger, metrics = logger_on(log, max_pending=5, linger_s=60.0)
    answer = answer_of("u1", 10)
    started = time.perf_counter()
    for _ in range(20):
        logger.log(answer)
    assert time.perf_counter() - started < 0.5
    assert logger.pending == 5 and dropped(metrics) == 15  # events, not items
    logger.close()
    assert len(logged_events(log, "backlog-test", lambda got: len(got) >= 5)) == 5
    log.close()


def test_a_stuck_log_never_blocks_the_request_path(tmp_path: Path) -> None:
    """Another process holds the log database's write lock: the sender waits on it,
    requests do not, and once it is released close() delivers what was kept."""
    log = open_event_log(f"sqlite:///{tmp_path}/log.db")
    log.init_schema()
    holder = sqlite3.connect(tmp_path / "log.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    logger, metrics = logger_on(log, max_pending=3, linger_s=0.0)
    answer = answer_of("u1", 10)
    logger.log(answer)
    deadline = time.monotonic() + 5
    while logger.pending and time.monotonic() < deadline:
        time.sleep(0.01)  # until the sender took it: it is now waiting for the lock
    time.sleep(0.1)
    started = time.perf_counter()
    for _ in range(5):
        logger.log(answer)
    assert time.perf_counter() - started < 0.1
    assert logger.pending == 3 and dropped(metrics) == 2
    holder.execute("ROLLBACK")
    holder.close()
    logger.close()
    assert dropped(metrics) == 2
    assert len(logged_events(log, "stuck-test", lambda got: len(got) >= 4)) == 4
    log.close()


def test_undelivered_impressions_are_counted() -> None:
    log = open_event_log("memory://")
    log.init_schema()
    logger, metrics = logger_on(log, linger_s=60.0)
    for n in range(3):
        logger.log(answer_of(f"u{n}", 4))
    log.close()  # gone before the sender got to it: publish reports each event
    logger.close()
    assert dropped(metrics) == 3 and logger.pending == 0


class SlowState(UserStateStore):
    """A user state store that answers too late (a stalled Redis)."""

    def __init__(self, inner: UserStateStore, delay_s: float) -> None:
        super().__init__("slow://", inner.ttl_s, inner.recent_cap)
        self.inner, self.delay_s = inner, delay_s

    def ping(self) -> None:
        time.sleep(self.delay_s)

    def apply(self, updates: Sequence[Any]) -> None:
        raise NotImplementedError

    def apply_events(self, events: Sequence[StateEvent], half_life_s: float) -> int:
        raise NotImplementedError

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        time.sleep(self.delay_s)
        return self.inner.get_many(user_ids)

    def delete(self, user_id: str) -> None:
        raise NotImplementedError


def test_slow_user_state_degrades_on_time(settings: Settings, stores: Any) -> None:
    slow = SlowState(stores[0], delay_s=0.5)
    with TestClient(build(settings, stores, user_state=slow, budget_ms=80)) as client:
        started = time.perf_counter()
        body = client.get("/v1/users/u0/recommendations", params={"k": 10}).json()
        elapsed = time.perf_counter() - started
    assert body["degraded"] and "timeout" in body["failures"]["user_state"]
    assert body["timings_ms"]["total"] < 80
    assert elapsed < 0.3  # the client's view too (TestClient adds a little)
    kinds = {s.partition(":")[0] for i in body["items"] for s in i["sources"]}
    assert "precomputed" in kinds and "fresh" not in kinds
    assert len(body["items"]) == 10


def test_blend_arm_keeps_stored_order(settings: Settings, stores: Any) -> None:
    with TestClient(build(settings, stores, experiment_arms={"blend": 1.0})) as client:
        body = client.get("/v1/users/u2/recommendations", params={"k": 8}).json()
    assert body["arm"] == "blend"
    stored = stores[1].get("u2")
    pre = [i["item_id"] for i in body["items"] if i["sources"][0].startswith("precomputed")]
    positions = [stored.items.index(i) for i in pre]
    assert positions == sorted(positions)


def test_fresh_switched_off_serves_without_fresh_candidates(
    settings: Settings, stores: Any
) -> None:
    """RECSYS_FRESH_QUOTA=0 (the benchmark's "precomputed only"), for a user whose state has
    a session vector: no fresh candidates and no failure (FAISS takes no k=0)."""
    vector = np.ones(8, dtype=np.float32)
    stores[0].apply_events([StateEvent("sv-1", "u3", "i7", "play", 1000.0, vector)], 600)
    assert stores[0].get("u3").session_vector is not None
    with TestClient(build(settings, stores, fresh_quota=0)) as client:
        body = client.get("/v1/users/u3/recommendations", params={"k": 8}).json()
    assert not body["degraded"], body["failures"]
    assert len(body["items"]) == 8
    assert all("fresh" not in i["sources"] for i in body["items"])


def test_admin_reload_needs_token_and_swaps(settings: Settings, stores: Any) -> None:
    registry = ModelRegistry(settings.registry_url)
    with TestClient(build(settings, stores, admin_token=None)) as client:
        assert client.post("/v1/admin/reload").status_code == 404
    with TestClient(build(settings, stores)) as client:
        before = client.get("/v1/users/u0/recommendations").json()["bundle"]
        assert client.post("/v1/admin/reload").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/v1/admin/reload", headers=wrong).status_code == 401
        newer = make_bundle(registry, seed=1)
        registry.promote(newer)
        try:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            reply = client.post("/v1/admin/reload", headers=auth).json()
            assert reply == {"swapped": True, "bundle": newer, "error": None}
            assert client.get("/v1/users/u0/recommendations").json()["bundle"] == newer
        finally:
            registry.rollback()
        assert client.post("/v1/admin/reload", headers=auth).json()["bundle"] == before


def test_swap_under_concurrent_requests_fails_none(settings: Settings, stores: Any) -> None:
    registry = ModelRegistry(settings.registry_url)
    app = build(settings, stores, reload_interval_s=0.05)
    newer = make_bundle(registry, seed=2)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):

            async def one(j: int) -> httpx.Response:
                return await client.get(f"/v1/users/u{j % 10}/recommendations")

            first = await asyncio.gather(*(one(j) for j in range(30)))
            registry.promote(newer)
            later: list[httpx.Response] = []
            for _ in range(40):  # until the poller swapped
                later += await asyncio.gather(*(one(j) for j in range(10)))
                if later[-1].json()["bundle"] == newer:
                    break
            registry.rollback()
            return [*first, *later]

    try:
        responses = asyncio.run(scenario())
    finally:
        if registry.live() and registry.live().version == newer:  # type: ignore[union-attr]
            registry.rollback()
    assert all(r.status_code == 200 for r in responses)
    bundles = [r.json()["bundle"] for r in responses]
    assert bundles[-1] == newer and bundles[0] != newer
    assert all(len(r.json()["items"]) == 10 for r in responses)


def test_no_bundle_yet_is_503_not_500(tmp_path: Path, stores: Any) -> None:
    empty = Settings(home=tmp_path, registry_url=f"file://{tmp_path}/models")
    with TestClient(build(empty, stores)) as client:
        reply = client.get("/v1/users/u0/recommendations")
        assert reply.status_code == 503 and "no live bundle" in reply.json()["detail"]
        assert client.get("/readyz").status_code == 503
        assert client.get("/v1/items/i1").status_code == 503


def test_ranker_is_resident_on_the_one_chosen_device(settings: Settings, version: str) -> None:
    """auto: the GPU when torch sees one (weights there, warmed up), else the CPU."""
    from online.bundle import load_serving_bundle
    from shared.device import resolve_torch_device

    bundle = load_serving_bundle(version, ModelRegistry(settings.registry_url).path(version))
    assert bundle.ranker is not None
    expected = resolve_torch_device("auto")
    assert bundle.ranker.device == expected
    assert all(p.device.type == expected.type for p in bundle.ranker.net.parameters())
    scores = bundle.ranker.score(np.zeros((300, len(bundle.ranker.spec.names)), np.float32))
    assert scores.shape == (300,) and scores.dtype == np.float32


def test_challenger_arm_is_served_by_its_own_bundle(settings: Settings, stores: Any) -> None:
    registry = ModelRegistry(settings.registry_url)
    live = registry.live()
    assert live is not None
    challenger = make_bundle(registry, seed=3)  # published, never promoted
    app = build(
        settings,
        stores,
        experiment_arms={"control": 1.0, "challenger": 1.0},
        experiment_bundles={"challenger": challenger},
    )
    with TestClient(app) as client:
        bodies = [client.get(f"/v1/users/u{j}/recommendations").json() for j in range(10)]
    served = {(b["arm"], b["bundle"]) for b in bodies}
    assert served == {("control", live.version), ("challenger", challenger)}
    assert not any(b["degraded"] for b in bodies)


@pytest.mark.parametrize(
    ("damage", "message"),
    [("flip", "embeddings/items.npy differs from its manifest"), ("drop", "is missing")],
)
def test_a_damaged_bundle_is_refused_and_the_old_one_keeps_serving(
    settings: Settings, stores: Any, damage: str, message: str
) -> None:
    """A promoted bundle whose files changed after it was written (one flipped byte still
    loads: only the manifest's digest tells) or went missing is refused, logged and counted."""
    registry = ModelRegistry(settings.registry_url)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(build(settings, stores)) as client:
        before = client.get("/v1/users/u0/recommendations").json()["bundle"]
        broken = make_bundle(registry, seed=3)
        target = registry.path(broken) / "embeddings" / "items.npy"
        if damage == "flip":
            data = bytearray(target.read_bytes())
            data[-5] ^= 0x01  # a float's low bit: the file still loads
            target.write_bytes(bytes(data))
        else:
            target.unlink()
        registry.promote(broken)
        try:
            reply = client.post("/v1/admin/reload", headers=auth).json()
            assert reply["swapped"] is False and reply["bundle"] == before
            assert message in reply["error"] and broken in reply["error"]
            assert client.get("/v1/users/u0/recommendations").json()["bundle"] == before
            metrics = client.get("/metrics").text
            assert "recsys_online_bundle_load_failures_total 1.0" in metrics
        finally:
            registry.rollback()


class ScanStore(CandidateStore):
    """The candidate store, with a scan that is slow per user or fails part-way."""

    def __init__(self, inner: CandidateStore, delay_s: float = 0.0, fail_after: int = -1) -> None:
        super().__init__("scan://")
        self.inner, self.delay_s, self.fail_after = inner, delay_s, fail_after

    def ping(self) -> None:
        self.inner.ping()

    def write(self, version: str, rows: Iterable[Candidates]) -> int:
        raise NotImplementedError

    def activate(self, version: str) -> None:
        raise NotImplementedError

    def live_version(self) -> str | None:
        return self.inner.live_version()

    def get(self, user_id: str, version: str | None = None) -> Candidates | None:
        return self.inner.get(user_id, version)

    def scan(self, version: str, limit: int | None = None) -> Iterator[Candidates]:
        for n, row in enumerate(self.inner.scan(version, limit)):
            if n == self.fail_after:
                raise ConnectionError("the node went away")
            time.sleep(self.delay_s)
            yield row

    def versions(self) -> list[VersionInfo]:
        return self.inner.versions()

    def drop(self, version: str) -> None:
        raise NotImplementedError


def cached_users(client: TestClient) -> int:
    return len(client.app.state.runtime.recommender.cache)  # type: ignore[attr-defined]


def test_a_fresh_server_answers_its_first_requests_from_the_filled_cache(
    settings: Settings, stores: Any
) -> None:
    """The bundle's candidates are read whole into the cache before it serves: every
    user's first request hits (no candidate read), and answers as a miss would."""
    users = [c.user_id for c in stores[1].scan(stores[1].live_version())]
    with TestClient(build(settings, stores)) as client:
        assert cached_users(client) == len(users) == 10
        warm = client.get("/v1/users/u2/recommendations", params={"k": 8}).json()
    assert warm["timings_ms"]["candidates"] == 0.0 and not warm["degraded"]
    with TestClient(build(settings, stores, candidates_cache_warm_s=0)) as client:
        assert cached_users(client) == 0
        cold = client.get("/v1/users/u2/recommendations", params={"k": 8}).json()
        assert cached_users(client) == 1
    assert cold["timings_ms"]["candidates"] > 0.0
    assert [i["item_id"] for i in warm["items"]] == [i["item_id"] for i in cold["items"]]
    assert [i["score"] for i in warm["items"]] == pytest.approx([i["score"] for i in cold["items"]])


def test_the_fill_stops_at_the_cache_size_its_time_or_a_failure(
    settings: Settings, stores: Any
) -> None:
    """Bounded by ``candidates_cache_size`` and ``candidates_cache_warm_s``; a scan that
    fails stops the fill. The bundle serves in every case, and misses fill the cache."""
    with TestClient(build(settings, stores, candidates_cache_size=4)) as client:
        assert cached_users(client) == 4
    slow = ScanStore(stores[1], delay_s=0.5)  # the whole scan: 5 s
    state, _, log = stores
    started = time.perf_counter()
    with TestClient(build(settings, (state, slow, log), candidates_cache_warm_s=0.2)) as client:
        assert time.perf_counter() - started < 4.0
        assert cached_users(client) == 0  # its one batch was not read in time
        body = client.get("/v1/users/u7/recommendations", params={"k": 8}).json()
        assert not body["degraded"] and len(body["items"]) == 8
    failing = ScanStore(stores[1], fail_after=0)
    with TestClient(build(settings, (state, failing, log))) as client:
        assert cached_users(client) == 0
        body = client.get("/v1/users/u7/recommendations", params={"k": 8}).json()
        assert not body["degraded"] and len(body["items"]) == 8
        assert cached_users(client) == 1
