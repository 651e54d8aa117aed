"""``/healthz`` (the process answers), ``/readyz`` (bundle loaded, stores reachable),
``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from online.deps import MetricsDep, RuntimeDep
from online.schemas import Readiness

router = APIRouter(tags=["health"])
_PING_TIMEOUT_S = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when a bundle is loaded and every store answers a ping, else 503 saying why."""
    checks: dict[str, str] = {}
    holder = runtime.holder
    bundle = holder.current
    checks["bundle"] = "ok" if bundle is not None else (holder.error or "not loaded")
    slots = runtime.slots
    results = await asyncio.gather(
        *(asyncio.wait_for(asyncio.to_thread(s.ping), _PING_TIMEOUT_S) for s in slots),
        return_exceptions=True,
    )
    for slot, result in zip(slots, results, strict=True):
        if isinstance(result, BaseException):
            checks[slot.name] = f"no answer in {_PING_TIMEOUT_S:.0f} s"
        else:
            checks[slot.name] = result or "ok"
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(ready=ready, bundle=bundle.version if bundle else None, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(registry: MetricsDep) -> Response:
    """This process's metrics, or with several workers all of theirs added up."""
    return Response(registry.exposition(), media_type=CONTENT_TYPE_LATEST)
