"""Event history role: every event of every user, kept for features and audits.

Real implementation: Cassandra (``events_by_user``). Embedded: SQLite. Writes are idempotent
on ``event_id``: the nearline tier delivers at least once, and a replayed event must not
appear twice.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence

from shared.events import Event
from shared.storage.base import Store


class EventHistoryStore(Store):
    """Append-only, per-user event history."""

    role = "event history"

    @abstractmethod
    def append(self, events: Sequence[Event]) -> None:
        """Store events; writing the same ``event_id`` again changes nothing."""

    @abstractmethod
    def for_user(self, user_id: str, limit: int = 100, since: float | None = None) -> list[Event]:
        """The user's events, newest first; ``since`` keeps those at or after it (epoch s)."""

    @abstractmethod
    def users(self) -> Iterator[str]:
        """Every user with at least one event, each once, in no set order (a full scan:
        for rebuilding state, not for a request path)."""
