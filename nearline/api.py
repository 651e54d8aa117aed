"""``POST /v1/events``: validate at the edge, produce to the events topic, answer 202.

The router writes through the ``EventLog`` role (Kafka in production, SQLite embedded),
keyed by user id so one user's events stay ordered in one partition. It answers 202 only
after the log acknowledged every event (Kafka: all in-sync replicas, bounded retries), 422
with a one-line message for a bad body, and 503 when the log cannot take the events.

The online API includes ``router`` and puts its ``EventLog`` on ``app.state.event_log``
(or overrides :func:`get_event_log`); :func:`create_app` is the same router on its own.

Who may write: when ``RECSYS_EVENTS_TOKEN`` is set, a request needs ``Authorization:
Bearer <token>`` (401 otherwise; compared in constant time), and ``RECSYS_EVENTS_RATE_PER_S``
gives each client address a token bucket (429 with ``Retry-After`` when it is empty). The
app that includes the router calls :func:`protect` with its settings; one that does not
gets the guard of ``Settings()`` on its first event request.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.errors import ServiceUnavailable
from shared.events import Event
from shared.http_auth import bearer_matches
from shared.http_limits import RequestLimits
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


class EventsGuard:
    """The events key and the per-client token buckets of one app."""

    MAX_CLIENTS = 10_000  # buckets kept (least recently seen dropped): memory stays bounded

    def __init__(self, token: str | None, rate_per_s: float, burst: int) -> None:
        self._token = token
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> EventsGuard:
        token = settings.events_token.get_secret_value() if settings.events_token else None
        return cls(token, settings.events_rate_per_s, settings.events_burst)

    def check(self, request: Request) -> None:
        """Raise 401 or 429 (as HTTPException) when the request may not write now."""
        if self._token is not None and not bearer_matches(
            request.headers.get("authorization"), self._token
        ):
            raise HTTPException(
                401, "missing or wrong events token", {"WWW-Authenticate": "Bearer"}
            )
        if self.rate > 0:
            wait = self._take(request.client.host if request.client else "")
            if wait > 0:
                raise HTTPException(
                    429,
                    f"over {self.rate:g} requests/s for this client",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )

    def _take(self, client: str) -> float:
        """Take one token from ``client``'s bucket; 0.0, or the seconds until one is due."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            if len(self._buckets) > self.MAX_CLIENTS:
                self._buckets.popitem(last=False)
        return wait


def protect(app: FastAPI, settings: Settings) -> None:
    """Guard the events route of ``app`` with ``settings``' events key and rate limit."""
    app.state.events_guard = EventsGuard.from_settings(settings)


def _guard(request: Request) -> None:
    guard: EventsGuard | None = getattr(request.app.state, "events_guard", None)
    if guard is None:
        guard = request.app.state.events_guard = EventsGuard.from_settings(Settings())
    guard.check(request)


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


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with every ``#/$defs/...`` reference replaced by its definition (the
    event's models are not recursive), so that it stands alone in the OpenAPI document."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inlined(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inlined(v, defs) for v in schema]
    return schema


def _event_schema() -> dict[str, Any]:
    schema = Event.model_json_schema()
    event: dict[str, Any] = _inlined(schema, schema.get("$defs", {}))
    event["description"] = (
        "One user event (shared.events.Event, schema version 1). A shown list is for"
        " impressions only: its first item is the event's item_id and its positions increase"
        " (two rules JSON Schema cannot state; the server answers 422 when they are broken)."
    )
    # The rules of a shown list that JSON Schema can state: impressions only, and no
    # context key of that name.
    event["if"] = {"properties": {"shown": {"type": "array"}}, "required": ["shown"]}
    event["then"] = {
        "properties": {
            "type": {"const": "impression"},
            "context": {"not": {"required": ["shown"]}},
        }
    }
    return event


_EVENT_SCHEMA = _event_schema()
_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One event or a list of 1 to "
        f"{MAX_EVENTS_PER_REQUEST} events, validated exactly as this schema says.",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        _EVENT_SCHEMA,
                        {
                            "type": "array",
                            "items": _EVENT_SCHEMA,
                            "minItems": 1,
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
    responses={
        401: {"description": "Missing or wrong events token (when one is set)"},
        413: {"description": "Body over the size limit"},
        422: {"description": "Malformed body"},
        429: {"description": "Over this client's rate limit"},
        503: {"description": "Event log down"},
    },
    openapi_extra=_BODY_DOC,
    dependencies=[Depends(_guard)],
)
async def post_events(request: Request, log: EventLogDep) -> Accepted:
    """Produce one event or a batch; 202 once the log acknowledged all of them."""
    events = parse_events(await request.body())
    records = [(e.user_id, e.to_json()) for e in events]
    breaker = LogBreaker.of(request.app)
    breaker.admit()
    settled = False
    try:
        await run_in_threadpool(log.append, records)
        breaker.succeeded()
        settled = True
    except ServiceUnavailable as err:
        breaker.failed(str(err))
        settled = True
        raise HTTPException(503, str(err), headers={"Retry-After": "1"}) from err
    finally:
        if not settled:  # cancelled or another error: let the next request probe
            breaker.released()
    return Accepted(accepted=len(events), event_ids=[e.event_id for e in events])


class LogBreaker:
    """Answers 503 at once while the event log is known to be down, instead of every
    request waiting the producer's whole send timeout (10 s) for its own refusal.

    After a failed append the circuit is open for ``cooldown_s``: requests are refused
    without touching the log. Then one request probes it (half-open) while the others are
    still refused; its success closes the circuit. Nothing is accepted that the log did not
    acknowledge, so a refusal loses nothing: the client retries after ``Retry-After``. All
    of it runs on the app's event loop, so it needs no lock.
    """

    def __init__(self, cooldown_s: float = 1.0) -> None:
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.last_error = ""
        self._open_until = 0.0
        self._probing = False

    @classmethod
    def of(cls, app: FastAPI) -> LogBreaker:
        breaker: LogBreaker | None = getattr(app.state, "event_log_breaker", None)
        if breaker is None:
            breaker = app.state.event_log_breaker = cls()
        return breaker

    def admit(self) -> None:
        if not self.failures:
            return
        if self._probing or time.monotonic() < self._open_until:
            raise HTTPException(
                503,
                f"event log unavailable (circuit open after {self.failures} failed appends;"
                f" last: {self.last_error})",
                headers={"Retry-After": "1"},
            )
        self._probing = True

    def succeeded(self) -> None:
        self.failures, self._probing = 0, False

    def failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        self._open_until = time.monotonic() + self.cooldown_s
        self._probing = False

    def released(self) -> None:
        self._probing = False


def create_app(event_log: EventLog | None = None, settings: Settings | None = None) -> FastAPI:
    """The events router on its own; opens the event log from settings unless one is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from shared.storage.factory import open_event_log

        owned = event_log is None
        app.state.event_log = event_log or open_event_log(resolved.event_log_url)
        try:
            yield
        finally:
            if owned:
                app.state.event_log.close()

    resolved = settings or Settings()
    app = FastAPI(title="tiered-recsys events", lifespan=lifespan)
    app.include_router(router)
    protect(app, resolved)
    app.add_middleware(RequestLimits, max_body_bytes=resolved.max_body_bytes)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
