"""The user event: the one record every tier agrees on (schema version 1).

Events arrive at the API, travel through the event log keyed by user id, update the
user's fresh state, land in the event history and, through the event lake, feed the next
offline run. JSON on the wire; timestamps are epoch seconds with millisecond precision,
which is what Cassandra keeps, so an event reads back exactly as it was written.

Impressions come in two shapes, both valid:

* one impression event per answer (what the online tier sends): ``item_id`` is the first
  item shown, so a reader that knows only ``item_id`` still sees one, and ``shown`` lists
  every item in display order with its ``position`` and first ``source``; the answer's
  ``arm``, ``bundle``, ``surface``, ``request_id`` and ``degraded`` ride in ``context``;
* one impression event per item, ``position`` and ``source`` in its context, no ``shown``
  (what the online tier sent before; still found in old logs and lakes).

``shown`` is an additive, optional field, so the schema version stays 1: every event
without it is byte for byte what it was, and readers of this module accept both shapes.
A bump would not spare old readers anything (they reject an unknown version exactly as they
reject an unknown field: ``extra="forbid"``), so the order of a deploy is what matters:
readers (nearline worker, analysis) before the API that sends the new shape.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from enum import StrEnum
from itertools import pairwise
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

SCHEMA_VERSION = 1
MAX_SHOWN = 100  # the API serves at most 100 items per answer
_ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"


class EventType(StrEnum):
    """What the user did. Ordered roughly by how much it says about their taste."""

    IMPRESSION = "impression"
    CLICK = "click"
    PLAY = "play"
    RATE = "rate"
    ADD_TO_LIST = "add_to_list"
    SKIP = "skip"


def _new_event_id() -> str:
    return uuid.uuid4().hex


def _now() -> float:
    return round(time.time(), 3)


ContextValue = str | int | float | bool


class Shown(BaseModel):
    """One item of an answer as it was shown: where in the list, and which source it came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str = Field(pattern=_ID_PATTERN)
    position: int = Field(ge=0, strict=True)  # 0 = first; strict: true is not 1
    source: str = Field(max_length=128)  # e.g. "precomputed:ease+als", "fresh", "popular"


class Event(BaseModel):
    """One user event. ``event_id`` makes every write of it idempotent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    event_id: str = Field(default_factory=_new_event_id, pattern=_ID_PATTERN)
    user_id: str = Field(pattern=_ID_PATTERN)
    item_id: str = Field(pattern=_ID_PATTERN)
    type: EventType
    # Strict: a JSON true or false is not a number (the published schema says so too).
    value: float | None = Field(None, allow_inf_nan=False, strict=True)
    timestamp: float = Field(default_factory=_now, ge=0, allow_inf_nan=False, strict=True)
    context: dict[str, ContextValue] = Field(default_factory=dict, max_length=32)
    # Impressions only: the whole answer in display order (a tuple, as the event is frozen).
    shown: tuple[Shown, ...] | None = Field(None, min_length=1, max_length=MAX_SHOWN)

    @field_validator("timestamp")
    @classmethod
    def _millisecond_precision(cls, value: float) -> float:
        return round(value, 3)

    # A validator of the field, not of the model: an after-model validator would rename the
    # model in the error paths of unions (the events API's ``Event | list[Event]`` body).
    # The fields before ``shown`` are validated by now; those that failed are not in ``data``.
    @field_validator("shown")
    @classmethod
    def _an_impressions_list(
        cls, shown: tuple[Shown, ...] | None, info: ValidationInfo
    ) -> tuple[Shown, ...] | None:
        if shown is None:
            return shown
        if info.data.get("type", EventType.IMPRESSION) is not EventType.IMPRESSION:
            raise ValueError("only impression events carry a shown list")
        if shown[0].item_id != info.data.get("item_id", shown[0].item_id):
            raise ValueError("its first item must be the event's item_id")
        if any(a.position >= b.position for a, b in pairwise(shown)):
            raise ValueError("positions must increase (the list in display order)")
        if "shown" in info.data.get("context", {}):  # the lake keeps the list in the context
            raise ValueError("an event with a shown list may not use the context key 'shown'")
        return shown

    def to_json(self) -> bytes:
        """Wire format: compact JSON bytes (no ``shown`` key on events without one)."""
        exclude = {"shown"} if self.shown is None else None
        return orjson.dumps(self.model_dump(mode="json", exclude=exclude))

    def lake_context(self) -> dict[str, Any]:
        """The context as the event lake keeps it (JSON text): an impression's shown list
        under ``"shown"``, a list, which no context value can be, so it is unambiguous."""
        if self.shown is None:
            return dict(self.context)
        return {**self.context, "shown": [s.model_dump() for s in self.shown]}

    @staticmethod
    def split_lake_context(
        stored: Mapping[str, Any],
    ) -> tuple[dict[str, Any], tuple[Shown, ...] | None]:
        """The inverse of :meth:`lake_context`: ``(context, shown)`` for the event's fields.

        Only a list under ``"shown"`` is the impression's list: an older event may have a
        scalar context value of that name, and it stays in the context as it was written.
        """
        shown = stored.get("shown")
        if not isinstance(shown, list):
            return dict(stored), None
        context = {k: v for k, v in stored.items() if k != "shown"}
        return context, tuple(Shown.model_validate(s) for s in shown)

    @classmethod
    def from_json(cls, data: bytes | str) -> Event:
        """Parse and validate; raises ``pydantic.ValidationError`` on a malformed event."""
        return cls.model_validate_json(data)
