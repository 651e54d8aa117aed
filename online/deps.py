"""FastAPI dependencies of the online API, as ``Annotated`` aliases.

All ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
per dependency per request for what is an attribute read (a tenth of a request's time).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from online.bundle import ServingBundle
from online.holder import BundleHolder
from online.impressions import ImpressionLogger
from online.metrics import OnlineMetrics
from online.recommend import Recommender
from online.runtime import Runtime
from shared.http_auth import bearer_matches
from shared.settings import Settings


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    return _runtime(request)


async def get_recommender(request: Request) -> Recommender:
    return _runtime(request).recommender


async def get_holder(request: Request) -> BundleHolder:
    return _runtime(request).holder


async def get_bundle(request: Request) -> ServingBundle:
    """The bundle being served, read once for the request; 503 before the first one."""
    holder = _runtime(request).holder
    bundle = holder.current
    if bundle is None:
        raise HTTPException(503, holder.error or "no bundle loaded yet")
    return bundle


async def get_metrics(request: Request) -> OnlineMetrics:
    return _runtime(request).metrics


async def get_impressions(request: Request) -> ImpressionLogger:
    return _runtime(request).impressions


async def require_admin(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Bearer token from settings; without a configured token the endpoints are off (404)."""
    settings: Settings = _runtime(request).settings
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not token:
        raise HTTPException(404, "admin endpoints are disabled (RECSYS_ADMIN_TOKEN unset)")
    if not bearer_matches(authorization, token):
        raise HTTPException(401, "admin token missing or wrong", {"WWW-Authenticate": "Bearer"})


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
HolderDep = Annotated[BundleHolder, Depends(get_holder)]
BundleDep = Annotated[ServingBundle, Depends(get_bundle)]
MetricsDep = Annotated[OnlineMetrics, Depends(get_metrics)]
ImpressionsDep = Annotated[ImpressionLogger, Depends(get_impressions)]
AdminDep = Depends(require_admin)
