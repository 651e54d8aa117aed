"""Event history role: every event of every user, kept for features and audits.

Real implementation: Cassandra (``events_by_user``). Embedded: SQLite. Writes are idempotent
on ``event_id``: the nearline tier delivers at least once, and a replayed event must not
appear twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from shared.events import Event


class EventHistoryStore(ABC):
    """Append-only, per-user event history."""

    role = "event history"

    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    def ping(self) -> None:
        """Raise ``ServiceUnavailable`` unless the store answers."""

    @abstractmethod
    def init_schema(self) -> None:
        """Create keyspace and tables (idempotent)."""

    @abstractmethod
    def append(self, events: Sequence[Event]) -> None:
        """Store events; writing the same ``event_id`` again changes nothing."""

    @abstractmethod
    def for_user(self, user_id: str, limit: int = 100, since: float | None = None) -> list[Event]:
        """The user's events, newest first; ``since`` keeps those at or after it (epoch s)."""

    def close(self) -> None:
        """Release connections."""
