"""``POST /v1/events``: validate at the edge, produce to the events topic, answer 202.

The router writes through the ``EventLog`` role (Kafka in production, SQLite embedded),
keyed by user id so one user's events stay ordered in one partition. It answers 202 only
after the log acknowledged every event (Kafka: all in-sync replicas, bounded retries), 422
with a one-line message for a bad body, and 503 when the log cannot take the events.

The online API includes ``router`` and puts its ``EventLog`` on ``app.state.event_log``
(or overrides :func:`get_event_log`); :func:`create_app` is the same router on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.errors import ServiceUnavailable
from shared.events import Event
from shared.settings import Settings
from shared.storage.event_log import EventLog

MAX_EVENTS_PER_REQUEST = 1000
_BODY: TypeAdapter[Event | list[Event]] = TypeAdapter(Event | list[Event])


class Accepted(BaseModel):
    """What a 202 says: how many events the log took, and their ids (for idempotent retries)."""

    accepted: int
    event_ids: list[str]


def get_event_log(request: Request) -> EventLog:
    log: EventLog | None = getattr(request.app.state, "event_log", None)
    if log is None:
        raise HTTPException(503, "no event log configured (app.state.event_log)")
    return log


EventLogDep = Annotated[EventLog, Depends(get_event_log)]

router = APIRouter(tags=["events"])


def parse_events(body: bytes) -> list[Event]:
    """One event or a list of them; raises ``HTTPException(422)`` naming the first problem."""
    try:
        parsed = _BODY.validate_json(body)
    except ValidationError as err:
        raise HTTPException(422, _one_line(err, body)) from err
    events = parsed if isinstance(parsed, list) else [parsed]
    if not events:
        raise HTTPException(422, "body: an empty list holds no events")
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise HTTPException(
            422, f"body: {len(events)} events, at most {MAX_EVENTS_PER_REQUEST} per request"
        )
    return events


def _one_line(err: ValidationError, body: bytes) -> str:
    errors = err.errors()
    batch = body.lstrip()[:1] == b"["
    branch = "list[Event]" if batch else "Event"
    # A union reports each branch; keep the errors of the branch the body's shape chose.
    chosen = [e for e in errors if e["loc"][:1] == (branch,)] or errors
    first = chosen[0]
    loc = [str(p) for p in first["loc"] if p not in ("Event", "list[Event]")]
    if batch and loc:
        loc[0] = f"events[{loc[0]}]"
    more = f" (and {len(chosen) - 1} more)" if len(chosen) > 1 else ""
    return f"{'.'.join(loc) or 'body'}: {first['msg']}{more}"


_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One event (shared.events.Event, schema version 1) or a list of them.",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "object"},
                        {
                            "type": "array",
                            "items": {"type": "object"},
                            "maxItems": MAX_EVENTS_PER_REQUEST,
                        },
                    ]
                }
            }
        },
    }
}


@router.post(
    "/v1/events",
    status_code=202,
    response_model=Accepted,
    responses={422: {"description": "Malformed body"}, 503: {"description": "Event log down"}},
    openapi_extra=_BODY_DOC,
)
async def post_events(request: Request, log: EventLogDep) -> Accepted:
    """Produce one event or a batch; 202 once the log acknowledged all of them."""
    events = parse_events(await request.body())
    records = [(e.user_id, e.to_json()) for e in events]
    try:
        await run_in_threadpool(log.append, records)
    except ServiceUnavailable as err:
        raise HTTPException(503, str(err), headers={"Retry-After": "1"}) from err
    return Accepted(accepted=len(events), event_ids=[e.event_id for e in events])


def create_app(event_log: EventLog | None = None, settings: Settings | None = None) -> FastAPI:
    """The events router on its own; opens the event log from settings unless one is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from shared.storage.factory import open_event_log

        owned = event_log is None
        app.state.event_log = event_log or open_event_log((settings or Settings()).event_log_url)
        try:
            yield
        finally:
            if owned:
                app.state.event_log.close()

    app = FastAPI(title="tiered-recsys events", lifespan=lifespan)
    app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
