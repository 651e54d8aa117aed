"""The user event: the one record every tier agrees on (schema version 1).

Events arrive at the API, travel through the event log keyed by user id, update the
user's fresh state, land in the event history and, through the event lake, feed the next
offline run. JSON on the wire; timestamps are epoch seconds with millisecond precision,
which is what Cassandra keeps, so an event reads back exactly as it was written.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
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


class Event(BaseModel):
    """One user event. ``event_id`` makes every write of it idempotent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    event_id: str = Field(default_factory=_new_event_id, pattern=_ID_PATTERN)
    user_id: str = Field(pattern=_ID_PATTERN)
    item_id: str = Field(pattern=_ID_PATTERN)
    type: EventType
    value: float | None = Field(None, allow_inf_nan=False)
    timestamp: float = Field(default_factory=_now, ge=0, allow_inf_nan=False)
    context: dict[str, ContextValue] = Field(default_factory=dict, max_length=32)

    @field_validator("timestamp")
    @classmethod
    def _millisecond_precision(cls, value: float) -> float:
        return round(value, 3)

    def to_json(self) -> bytes:
        """Wire format: compact JSON bytes."""
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data: bytes | str) -> Event:
        """Parse and validate; raises ``pydantic.ValidationError`` on a malformed event."""
        return cls.model_validate_json(data)
