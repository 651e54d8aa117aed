"""Embedded event history: one row per event id."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from shared.events import Event
from shared.storage.history import EventHistoryStore
from shared.storage.sqlite.db import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events_by_user (
    user_id TEXT NOT NULL, timestamp REAL NOT NULL, event_id TEXT NOT NULL, event BLOB NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX IF NOT EXISTS events_by_user_time ON events_by_user (user_id, timestamp DESC);
"""


class SqliteEventHistoryStore(SqliteStore, EventHistoryStore):
    """``INSERT OR IGNORE`` on (user, event id) makes replays harmless."""

    schema = _SCHEMA

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._open_db(url)

    def append(self, events: Sequence[Event]) -> None:
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO events_by_user VALUES (?, ?, ?, ?)",
                [(e.user_id, e.timestamp, e.event_id, e.to_json()) for e in events],
            )

    def for_user(self, user_id: str, limit: int = 100, since: float | None = None) -> list[Event]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT event FROM events_by_user WHERE user_id = ? AND timestamp >= ?"
                " ORDER BY timestamp DESC, event_id LIMIT ?",
                (user_id, since if since is not None else float("-inf"), limit),
            ).fetchall()
        return [Event.from_json(r[0]) for r in rows]

    def users(self) -> Iterator[str]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT DISTINCT user_id FROM events_by_user").fetchall()
        return iter([r[0] for r in rows])
