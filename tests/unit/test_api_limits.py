"""What a client may send: body, query and header sizes (shared.http_limits), the events
key and rate limit (nearline.api.EventsGuard), and CORS, on both APIs and embedded stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from nearline.api import EventsGuard, create_app, protect
from nearline.api import router as events_router
from online.app import create_app as create_online_app
from shared.settings import Settings
from shared.storage.event_log import EventLog
from shared.storage.factory import open_event_log

EVENT = {"user_id": "u1", "item_id": "i1", "type": "play"}


@pytest.fixture
def log() -> Iterator[EventLog]:
    store = open_event_log("memory://")
    store.init_schema()
    yield store
    store.close()


def written(log: EventLog) -> int:
    consumer = log.consumer("limits-check")
    try:
        return len(consumer.poll(1000, 0.2))
    finally:
        consumer.close()


def events_client(log: EventLog, tmp_path: Path, **settings: object) -> TestClient:
    return TestClient(create_app(log, Settings(home=tmp_path, **settings)))


def test_a_body_over_the_limit_is_refused_before_it_is_read(log: EventLog, tmp_path: Path) -> None:
    big = orjson.dumps([EVENT] * 100)  # about 5 KB
    with events_client(log, tmp_path, max_body_bytes=2_048) as client:
        declared = client.post("/v1/events", content=big)
        assert declared.status_code == 413
        assert declared.json() == {"detail": "body over 2048 bytes"}

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for start in range(0, len(big), 512):
                yield big[start : start + 512]

        streamed = client.post("/v1/events", content=chunks())
        assert streamed.status_code == 413
        assert client.post("/v1/events", json=EVENT).status_code == 202
    assert written(log) == 1  # only the small body reached the log


def test_long_query_strings_and_headers_are_refused(log: EventLog, tmp_path: Path) -> None:
    with events_client(log, tmp_path) as client:
        assert client.get("/healthz", params={"q": "x" * 9_000}).status_code == 414
        assert client.get("/healthz", headers={"x-big": "y" * 17_000}).status_code == 431
        assert client.get("/healthz", params={"q": "x" * 100}).status_code == 200


def test_events_token_when_set(log: EventLog, tmp_path: Path) -> None:
    with events_client(log, tmp_path, events_token="s3cret") as client:
        missing = client.post("/v1/events", json=EVENT)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/v1/events", json=EVENT, headers={"Authorization": "Bearer s3cre"})
        assert wrong.status_code == 401
        right = client.post("/v1/events", json=EVENT, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 202
    assert written(log) == 1
    assert "s3cret" not in repr(Settings(events_token="s3cret"))  # never printed or logged


def test_rate_limit_answers_429_with_retry_after(log: EventLog, tmp_path: Path) -> None:
    with events_client(log, tmp_path, events_rate_per_s=0.5, events_burst=2) as client:
        codes = [client.post("/v1/events", json=EVENT).status_code for _ in range(3)]
        assert codes == [202, 202, 429]
        refused = client.post("/v1/events", json=EVENT)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
    assert written(log) == 2


def test_token_bucket_refills_at_its_rate_per_client(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("nearline.api.time.monotonic", lambda: clock[0])
    guard = EventsGuard(None, rate_per_s=2.0, burst=3)
    assert [guard._take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert guard._take("a") == pytest.approx(0.5)  # empty: one token in half a second
    assert guard._take("b") == 0.0  # another client has its own bucket
    clock[0] += 0.5
    assert guard._take("a") == 0.0
    assert guard._take("a") == pytest.approx(0.5)
    clock[0] += 60.0
    assert [guard._take("a") for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


def test_buckets_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EventsGuard, "MAX_CLIENTS", 3)
    guard = EventsGuard(None, rate_per_s=1.0, burst=1)
    for client in "abcde":
        guard._take(client)
    assert list(guard._buckets) == ["c", "d", "e"]


def test_online_api_applies_limits_token_and_cors(log: EventLog, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        device="cpu",
        events_token="k",
        max_body_bytes=1_024,
        cors_origins=["https://app.example.com"],
    )
    app = create_online_app(settings, event_log=log, routers=[events_router])
    protect(app, settings)  # what `recsys online serve` and the demo do
    with TestClient(app) as client:
        assert client.post("/v1/events", json=EVENT).status_code == 401
        auth = {"Authorization": "Bearer k"}
        assert client.post("/v1/events", json=EVENT, headers=auth).status_code == 202
        big = orjson.dumps([EVENT] * 40)
        assert client.post("/v1/events", content=big, headers=auth).status_code == 413
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = client.options(
            "/v1/events", headers={"Origin": "https://app.example.com", **preflight}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        other = client.options("/v1/events", headers={"Origin": "https://evil.test", **preflight})
        assert "access-control-allow-origin" not in other.headers
    assert written(log) == 1


def test_no_cors_by_default(log: EventLog, tmp_path: Path) -> None:
    app = create_online_app(Settings(home=tmp_path, device="cpu"), event_log=log)
    with TestClient(app) as client:
        reply = client.get("/healthz", headers={"Origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in reply.headers


def test_openapi_describes_the_events_body_the_server_validates(
    log: EventLog, tmp_path: Path
) -> None:
    """The published body schema accepts what the server accepts and refuses the rest
    (it accepted ``[{}, {}]``, which the server answers 422)."""
    import jsonschema

    with events_client(log, tmp_path) as client:
        operation = client.get("/openapi.json").json()["paths"]["/v1/events"]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        validator = jsonschema.Draft202012Validator(schema)
        shown = {"item_id": "i1", "position": 0, "source": "fresh"}
        impression = {**EVENT, "type": "impression", "shown": [shown]}
        bodies = [
            EVENT,
            [EVENT, impression],
            {},
            [{}, {}],
            [],
            {**EVENT, "extra": 1},
            {**EVENT, "user_id": "u 1"},
            {**EVENT, "type": "zap"},
            {**EVENT, "context": {"device": ["tv"]}},
            [EVENT] * 1_001,
        ]
        for body in bodies:
            status = client.post("/v1/events", json=body).status_code
            assert validator.is_valid(body) == (status == 202), (body, status)
