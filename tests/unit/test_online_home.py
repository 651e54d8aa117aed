"""The home rows the web client shows, the user sample and the client's static files, on
embedded stores and a hand-made bundle (no services, no Spark, no browser)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nearline.api import router as events_router
from online.app import CLIENT_DIR, create_app
from online.schemas import HomeResponse
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage.factory import open_candidates, open_event_log, open_user_state
from shared.storage.user_state import StateEvent
from tests.unit.test_online_helpers import candidate_rows, make_bundle, publish_candidates

RECENT = ["i5", "i60", "i1"]  # most recent first


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("home")
    settings = Settings(
        home=home, registry_url=f"file://{home}/models", reload_interval_s=3600, device="cpu"
    )
    registry = ModelRegistry(settings.registry_url)
    version = make_bundle(registry)
    registry.promote(version)
    state = open_user_state("memory://", ttl_s=3600, recent_cap=50)
    state.init_schema()
    cands = open_candidates("memory://")
    publish_candidates(cands, version, candidate_rows())
    log = open_event_log("memory://")
    log.init_schema()
    events = [
        StateEvent(f"e{j}", "u0", item, "play", 1000.0 + j)
        for j, item in enumerate(["i1", "i60", "i5"])
    ]
    state.apply_events(events, half_life_s=600)
    yield {"settings": settings, "state": state, "cands": cands, "log": log, "version": version}
    for store in (state, cands, log):
        store.close()


@pytest.fixture(scope="module")
def client(stores: dict[str, Any]) -> Iterator[TestClient]:
    app = create_app(
        stores["settings"],
        user_state=stores["state"],
        candidates=stores["cands"],
        event_log=stores["log"],
        routers=[events_router],
    )
    with TestClient(app) as client:
        yield client


def rows_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in body["rows"]}


def test_home_has_three_rows_with_sources_bundle_and_time(
    client: TestClient, stores: dict[str, Any]
) -> None:
    body = client.get("/v1/users/u0/home", params={"k": 8}).json()
    # The handler writes the JSON itself: it must still be exactly the documented schema.
    assert HomeResponse.model_validate(body).model_dump(mode="json") == body
    assert body["user_id"] == "u0" and body["bundle"] == stores["version"]
    assert body["recent"] == RECENT
    rows = rows_of(body)
    assert list(rows) == ["top_picks", "because_you_watched", "trending"]
    for row in rows.values():
        assert row["bundle"] == stores["version"] and row["server_ms"] >= 0
        assert 0 < len(row["items"]) <= 8
        assert {i["item_id"] for i in row["items"]}.isdisjoint(RECENT)  # seen items never shown
        for item in row["items"]:
            assert item["title"].startswith("Movie ") and item["genres"] and item["year"]
    assert {"precomputed", "fresh"} <= set(rows["top_picks"]["sources"])
    assert {"total", "rank"} <= set(rows["top_picks"]["timings_ms"])
    assert rows["trending"]["sources"] == ["trending"]


def test_because_you_watched_is_the_neighbours_of_the_latest_item(client: TestClient) -> None:
    rows = rows_of(client.get("/v1/users/u0/home", params={"k": 5}).json())
    because = rows["because_you_watched"]
    assert because["anchor"] == "i5" and because["title"] == "Because you watched Movie i5"
    similar = client.get("/v1/items/i5/similar", params={"k": 20}).json()["items"]
    expected = [s["item_id"] for s in similar if s["item_id"] not in RECENT][:5]
    assert [i["item_id"] for i in because["items"]] == expected
    assert all(i["sources"] == ["fresh"] for i in because["items"])
    assert all(i["reason"] == "because you watched Movie i5" for i in because["items"])


def test_a_play_moves_the_row_to_the_new_item(client: TestClient, stores: dict[str, Any]) -> None:
    stores["state"].apply_events([StateEvent("e-new", "u7", "i33", "play", 2000.0)], 600)
    rows = rows_of(client.get("/v1/users/u7/home").json())
    assert rows["because_you_watched"]["anchor"] == "i33"
    assert "i33" not in {i["item_id"] for row in rows.values() for i in row["items"]}


def test_unknown_user_gets_popular_picks_and_an_empty_because_row(client: TestClient) -> None:
    body = client.get("/v1/users/visitor-1/home").json()
    assert HomeResponse.model_validate(body).model_dump(mode="json") == body
    rows = rows_of(body)
    assert body["recent"] == []
    assert (
        rows["because_you_watched"]["items"] == [] and rows["because_you_watched"]["anchor"] is None
    )
    assert rows["top_picks"]["items"]
    assert all(
        "new here" in i["reason"] or "trending" in i["reason"] for i in rows["top_picks"]["items"]
    )


@pytest.mark.parametrize("params", [{"k": 0}, {"k": 51}, {"k": "x"}])
def test_bad_k_is_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/v1/users/u0/home", params=params)
    assert response.status_code == 422, response.text


def test_bad_user_id_is_422(client: TestClient) -> None:
    assert client.get("/v1/users/a%20b/home").status_code == 422


def test_user_sample_in_natural_order(client: TestClient, stores: dict[str, Any]) -> None:
    body = client.get("/v1/users", params={"limit": 3}).json()
    assert body == {"users": ["u0", "u1", "u2"], "bundle": stores["version"]}
    assert client.get("/v1/users", params={"limit": 0}).status_code == 422


def test_similar_items_carry_year_and_genres(client: TestClient) -> None:
    items = client.get("/v1/items/i5/similar", params={"k": 3}).json()["items"]
    assert len(items) == 3 and all(i["year"] and i["genres"] for i in items)


def test_the_web_client_is_served_at_the_root(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/client/app.js">' in page.text
    for name in ("app.js", "style.css"):
        response = client.get(f"/client/{name}")
        assert response.status_code == 200
        assert response.text == (CLIENT_DIR / name).read_text(encoding="utf-8")
    assert client.get("/client/missing.js").status_code == 404
    assert "/" not in client.get("/openapi.json").json()["paths"]  # not part of the API


def test_every_endpoint_the_client_calls_exists(client: TestClient) -> None:
    """Every /v1 path in app.js is a route of the API (a renamed route breaks the page)."""
    script = (CLIENT_DIR / "app.js").read_text(encoding="utf-8")
    used = {
        re.sub(r"\$\{[^}]*\}", "{}", path)  # `/v1/items/${id}/similar` -> /v1/items/{}/similar
        for path in re.findall(r"[`\"](/v1/[^`\"?]*)", script)
    }
    routes = {re.sub(r"\{[^}]*\}", "{}", p) for p in client.get("/openapi.json").json()["paths"]}
    assert used >= {"/v1/users/{}/home", "/v1/users", "/v1/events", "/v1/items/{}"}
    assert used <= routes, used - routes
