"""``GET /v1/users/{user_id}/home`` (rows for the web client) and ``GET /v1/users`` (a
sample of known users to browse as)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi import Path as PathParam

from online import home as rows
from online.bundle import ServingBundle
from online.deps import BundleDep, ImpressionsDep, RecommenderDep
from online.recommend import NoBundle
from online.routers.users import ID_PATTERN
from online.schemas import HomeResponse, UsersResponse
from shared import bundle as layout

router = APIRouter(tags=["home"])


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


@router.get("/v1/users", response_model=UsersResponse)
def users(
    bundle: BundleDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many users.")] = 20,
) -> UsersResponse:
    """Users the live bundle was trained on, in the bundle's order: someone to browse as."""
    return UsersResponse(users=list(_known_users(bundle.path)[:limit]), bundle=bundle.version)


@functools.lru_cache(maxsize=4)
def _known_users(path: Path) -> tuple[str, ...]:
    ids_file = path / layout.USER_IDS
    if not ids_file.is_file():
        return ()
    ids = [str(u) for u in json.loads(ids_file.read_text(encoding="utf-8"))]
    return tuple(sorted(ids, key=lambda u: (len(u), u))[:1000])  # "2" before "10"
