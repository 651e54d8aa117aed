"""The users resource: ``GET /v1/users`` (users the live bundle knows, to browse as),
``GET /v1/users/{user_id}/recommendations`` (one ranked list) and
``GET /v1/users/{user_id}/home`` (the rows of the web client)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi import Path as PathParam
from pydantic import StringConstraints

from online import home as rows
from online.bundle import ServingBundle
from online.deps import BundleDep, ImpressionsDep, RecommenderDep, RuntimeDep
from online.recommend import NoBundle
from online.schemas import HomeResponse, RecommendationsResponse, UsersResponse
from shared import bundle as layout

ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"  # as in shared.events
# One or more item ids separated by commas (spaces around them allowed).
_ID = r"[A-Za-z0-9_.:@\-]{1,128}"
EXCLUDE_PATTERN = rf"^\s*{_ID}(\s*,\s*{_ID})*\s*$"
MAX_EXCLUDE = 500
router = APIRouter(tags=["users"])


@router.get("/v1/users", response_model=UsersResponse)
def users(
    bundle: BundleDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many users.")] = 20,
) -> UsersResponse:
    """Users the live bundle was trained on, in id order ("2" before "10"): someone to browse as."""
    return UsersResponse(users=list(_known_users(bundle.path)[:limit]), bundle=bundle.version)


@functools.lru_cache(maxsize=4)
def _known_users(path: Path) -> tuple[str, ...]:
    ids_file = path / layout.USER_IDS
    if not ids_file.is_file():
        return ()
    ids = [str(u) for u in json.loads(ids_file.read_text(encoding="utf-8"))]
    return tuple(sorted(ids, key=lambda u: (len(u), u))[:1000])  # "2" before "10"


@router.get(
    "/v1/users/{user_id}/recommendations",
    response_model=RecommendationsResponse,
    responses={422: {"description": "Bad parameter"}, 503: {"description": "No bundle yet"}},
)
async def recommendations(
    user_id: Annotated[str, PathParam(pattern=ID_PATTERN)],
    *,
    runtime: RuntimeDep,  # one dependency for both the recommender and the impression log
    k: Annotated[int, Query(ge=1, le=100, description="How many items.")] = 10,
    surface: Annotated[
        str, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Where the list is shown.")
    ] = "home",
    exclude: Annotated[
        list[Annotated[str, StringConstraints(pattern=EXCLUDE_PATTERN)]] | None,
        Query(description="Item ids to leave out (repeat the parameter or separate by commas)."),
    ] = None,
) -> Response:
    """Up to ``k`` items for the user, each with its sources and a reason; degraded but
    on time when a store is slow or down. Unknown users get popular items."""
    excluded = {i.strip() for raw in exclude or [] for i in raw.split(",") if i.strip()}
    if len(excluded) > MAX_EXCLUDE:
        raise HTTPException(422, f"exclude: {len(excluded)} items, at most {MAX_EXCLUDE}")
    recommender = runtime.recommender
    try:
        answer = await recommender.recommend(user_id, k, excluded, surface)
    except NoBundle as err:
        raise HTTPException(503, f"no bundle to serve from: {err}") from err
    if recommender.settings.log_impressions:
        runtime.impressions.log(
            answer
        )  # encodes and queues (microseconds); a thread of its own sends
    # Serialised here with orjson, not through the response model: FastAPI would build the
    # models, validate them again against ``response_model`` and dump them, a millisecond
    # per request for a body whose shape is fixed here. ``response_model`` still documents
    # it, and the API tests validate every answer against it.
    body = {
        "user_id": answer.user_id,
        "items": [
            {"item_id": i.item_id, "score": i.score, "sources": i.sources, "reason": i.reason}
            for i in answer.items
        ],
        "bundle": answer.bundle,
        "arm": answer.arm,
        "degraded": answer.degraded,
        "failures": answer.failures,
        "timings_ms": answer.timings_ms,
        "request_id": answer.request_id,
    }
    return Response(orjson.dumps(body), media_type="application/json")


@router.get(
    "/v1/users/{user_id}/home",
    response_model=HomeResponse,
    responses={422: {"description": "Bad parameter"}, 503: {"description": "No bundle yet"}},
)
async def home(
    user_id: Annotated[str, PathParam(pattern=ID_PATTERN)],
    *,
    recommender: RecommenderDep,
    impressions: ImpressionsDep,
    k: Annotated[int, Query(ge=1, le=50, description="Items per row.")] = 12,
) -> Response:
    """The user's home page as rows: top picks (the blend), because you watched X (fresh
    neighbours of the latest engaged item), trending now; each with sources, bundle and
    server time."""
    try:
        page = await rows.home(recommender, user_id, k)
    except NoBundle as err:
        raise HTTPException(503, f"no bundle to serve from: {err}") from err
    if recommender.settings.log_impressions:
        impressions.log(page.top_picks)  # encodes and queues; a thread of its own sends
    bundle = page.catalogue
    # Plain dicts through orjson rather than the response models (FastAPI would validate the
    # ~40 tiles twice): ``response_model`` documents the shape, the tests hold it to it.
    body = {
        "user_id": page.user_id,
        "arm": page.arm,
        "bundle": page.bundle,
        "rows": [_row(bundle, row) for row in page.rows],
        "recent": page.recent,
        "server_ms": page.server_ms,
    }
    return Response(orjson.dumps(body), media_type="application/json")


def _row(bundle: ServingBundle, row: rows.Row) -> dict[str, Any]:
    return {
        "id": row.id,
        "title": row.title,
        "items": [_tile(bundle, t) for t in row.items],
        "sources": sorted({s.partition(":")[0] for tile in row.items for s in tile.sources}),
        "bundle": row.bundle,
        "server_ms": row.server_ms,
        "anchor": row.anchor,
        "degraded": row.degraded,
        "failures": row.failures,
        "timings_ms": row.timings_ms,
    }


def _tile(bundle: ServingBundle, tile: rows.Tile) -> dict[str, Any]:
    found = bundle.items.get(tile.item_id)
    return {
        "item_id": tile.item_id,
        "title": found.title if found else tile.item_id,
        "year": found.year if found else None,
        "genres": list(found.genres) if found else [],
        "score": tile.score,
        "sources": tile.sources,
        "reason": tile.reason,
    }
