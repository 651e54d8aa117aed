"""``GET /v1/users/{user_id}/recommendations``."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Response

from online.deps import RuntimeDep
from online.recommend import NoBundle
from online.schemas import RecommendationsResponse

ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"  # as in shared.events
MAX_EXCLUDE = 500
router = APIRouter(tags=["recommendations"])


@router.get(
    "/v1/users/{user_id}/recommendations",
    response_model=RecommendationsResponse,
    responses={422: {"description": "Bad parameter"}, 503: {"description": "No bundle yet"}},
)
async def recommendations(
    user_id: Annotated[str, Path(pattern=ID_PATTERN)],
    *,
    runtime: RuntimeDep,  # one dependency for both the recommender and the impression log
    k: Annotated[int, Query(ge=1, le=100, description="How many items.")] = 10,
    surface: Annotated[
        str, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Where the list is shown.")
    ] = "home",
    exclude: Annotated[
        list[str] | None,
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
