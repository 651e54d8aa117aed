"""Embedded user state: one JSON row per user with an expiry time.

``apply_events`` keeps the applied event ids (the dedupe window) and the session's weight in
the same row and runs :func:`fold_events` inside one transaction: idempotent per event id,
as the Redis store is.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import numpy as np
import orjson

from shared.storage.sqlite.db import SqliteStore
from shared.storage.user_state import (
    RecentEntry,
    Session,
    StateEvent,
    UserState,
    UserStateStore,
    UserStateUpdate,
    fold_events,
    merge_recent,
    pushed_entries,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS user_state (
    user_id TEXT PRIMARY KEY, state BLOB NOT NULL, session BLOB, expires_at REAL NOT NULL
);
"""


class SqliteUserStateStore(SqliteStore, UserStateStore):
    """Reads ignore expired rows; writes sweep them now and then."""

    schema = _SCHEMA

    def __init__(self, url: str, ttl_s: int, recent_cap: int) -> None:
        super().__init__(url, ttl_s, recent_cap)
        self._open_db(url)

    def apply(self, updates: Sequence[UserStateUpdate]) -> None:
        now = time.time()
        with self._db.transaction() as conn:
            rows = self._load_rows(conn, [u.user_id for u in updates], now)
            for update in updates:
                row = rows.setdefault(update.user_id, _Row(UserState(update.user_id)))
                state = row.state
                if update.new_items:
                    at = update.last_active if update.last_active is not None else now
                    row.recent = merge_recent(
                        row.recent, pushed_entries(update.new_items, at), self.recent_cap
                    )
                    state.recent_items = [entry.item_id for entry in row.recent]
                for name, n in update.counter_increments.items():
                    state.counters[name] = state.counters.get(name, 0) + n
                if update.session_vector is not None:
                    state.session_vector = np.asarray(update.session_vector, dtype=np.float32)
                    rows[update.user_id].session = None  # a replaced vector has no weight
                if update.last_active is not None:
                    state.last_active = update.last_active
            self._store(conn, rows, now)

    def apply_events(self, events: Sequence[StateEvent], half_life_s: float) -> int:
        by_user: dict[str, list[StateEvent]] = {}
        for event in events:
            by_user.setdefault(event.user_id, []).append(event)
        if not by_user:
            return 0
        now = time.time()
        applied = 0
        with self._db.transaction() as conn:
            rows = self._load_rows(conn, list(by_user), now)
            for user_id, user_events in by_user.items():
                row = rows.setdefault(user_id, _Row(UserState(user_id)))
                row.session, n = fold_events(
                    row.state,
                    row.session,
                    row.seen,
                    row.recent,
                    user_events,
                    recent_cap=self.recent_cap,
                    half_life_s=half_life_s,
                    window=self.dedupe_window,
                )
                applied += n
            self._store(conn, rows, now)
        return applied

    def _store(self, conn: sqlite3.Connection, rows: dict[str, _Row], now: float) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO user_state VALUES (?, ?, ?, ?)",
            [r.to_sql(now + self.ttl_s) for r in rows.values()],
        )
        conn.execute("DELETE FROM user_state WHERE expires_at <= ?", (now,))

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        with self._db.read() as conn:
            rows = self._load_rows(conn, user_ids, time.time())
        return {user_id: row.state for user_id, row in rows.items()}

    @staticmethod
    def _load_rows(
        conn: sqlite3.Connection, user_ids: Sequence[str], now: float
    ) -> dict[str, _Row]:
        if not user_ids:
            return {}
        marks = ",".join("?" * len(user_ids))
        found = conn.execute(
            # Only placeholders are formatted in; the ids are bound parameters.
            f"SELECT user_id, state, session FROM user_state WHERE expires_at > ? AND user_id IN ({marks})",  # noqa: S608
            (now, *user_ids),
        ).fetchall()
        return {user_id: _Row.from_sql(user_id, blob, session) for user_id, blob, session in found}

    def delete(self, user_id: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM user_state WHERE user_id = ?", (user_id,))


class _Row:
    """A user's state plus what only ``apply_events`` needs: applied ids, session weight and
    the recent list's entries (time and event id of each item)."""

    def __init__(
        self,
        state: UserState,
        session: Session | None = None,
        seen: list[str] | None = None,
        recent: list[RecentEntry] | None = None,
    ) -> None:
        self.state = state
        self.session = session
        self.seen = seen if seen is not None else []
        self.recent = recent if recent is not None else []

    @classmethod
    def from_sql(cls, user_id: str, blob: bytes, vector: bytes | None) -> _Row:
        data = orjson.loads(blob)
        mean = None if vector is None else np.frombuffer(vector, dtype=np.float32).copy()
        if "recent" in data:
            recent = [RecentEntry(t, e, i) for t, e, i in data["recent"]]
        else:  # a row written before the entries were kept: its items, in order, at last active
            recent = pushed_entries(data["recent_items"][::-1], data["last_active"] or 0.0)[::-1]
        state = UserState(
            user_id=user_id,
            recent_items=[entry.item_id for entry in recent],
            counters=data["counters"],
            session_vector=mean,
            last_active=data["last_active"],
        )
        session = None
        if mean is not None:
            # A vector written by apply() has no weight: it counts as one event at last_active.
            ref = data.get("session_t", data["last_active"] or 0.0)
            session = Session(mean.astype(np.float64), data.get("session_w", 1.0), ref)
        return cls(state, session, data.get("seen", []), recent)

    def to_sql(self, expires_at: float) -> tuple[str, bytes, bytes | None, float]:
        state = self.state
        data: dict[str, object] = {
            "recent": [list(entry) for entry in self.recent],
            "counters": state.counters,
            "last_active": state.last_active,
            "seen": self.seen,
        }
        if self.session is not None:
            data.update(session_w=self.session.weight, session_t=self.session.ref_time)
        vector = state.session_vector
        blob = None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
        return state.user_id, orjson.dumps(data), blob, expires_at
