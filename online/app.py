"""The online API: ``create_app`` wires settings, stores, the bundle and the routers.

Nothing happens at import time. The lifespan opens the stores (one that does not answer
is retried in the background, and the API serves degraded meanwhile), loads the live
bundle, and starts the poller that swaps in newly promoted bundles (:mod:`online.runtime`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from online.routers import admin, health, items, users
from online.runtime import Runtime
from shared.http_limits import RequestLimits
from shared.settings import Settings
from shared.storage.candidates import CandidateStore
from shared.storage.event_log import EventLog
from shared.storage.user_state import UserStateStore


def create_app(
    settings: Settings | None = None,
    *,
    user_state: UserStateStore | None = None,
    candidates: CandidateStore | None = None,
    event_log: EventLog | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The API; stores given here are used as they are (and not closed), the others are
    opened from settings.

    ``routers`` are included as well: the composition root (``recsys online serve``) passes
    the nearline tier's ``POST /v1/events`` router, which finds the event log on
    ``app.state.event_log`` (no tier imports another, so this module cannot import it).

    Every request passes :class:`shared.http_limits.RequestLimits` (body, query and header
    sizes); browsers may call from ``settings.cors_origins`` only (none: same origin).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(
            settings,
            user_state=user_state,
            candidates=candidates,
            event_log=event_log,
            app_state=app.state,
        )
        app.state.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="tiered-recsys online API",
        version="1",
        description="Recommendations inside a deadline: precomputed, fresh and popular "
        "candidates ranked by the resident torch ranker.",
        lifespan=lifespan,
    )

    app.include_router(users.router)
    app.include_router(items.router)
    for router in routers:
        app.include_router(router)
    app.include_router(admin.router)
    app.include_router(health.router)
    _serve_client(app)
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


CLIENT_DIR = Path(__file__).with_name("client")


def _serve_client(app: FastAPI) -> None:
    """The demo web client: static files, no build step, at ``/``."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(CLIENT_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/client", StaticFiles(directory=CLIENT_DIR), name="client")
