"""Embedded user state: one JSON row per user with an expiry time."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import numpy as np
import orjson

from shared.storage.sqlite.db import SqliteStore
from shared.storage.user_state import UserState, UserStateStore, UserStateUpdate, merge_recent

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
            states = self._load(conn, [u.user_id for u in updates], now)
            for update in updates:
                state = states.setdefault(update.user_id, UserState(update.user_id))
                state.recent_items = merge_recent(
                    state.recent_items, update.new_items, self.recent_cap
                )
                for name, n in update.counter_increments.items():
                    state.counters[name] = state.counters.get(name, 0) + n
                if update.session_vector is not None:
                    state.session_vector = np.asarray(update.session_vector, dtype=np.float32)
                if update.last_active is not None:
                    state.last_active = update.last_active
            conn.executemany(
                "INSERT OR REPLACE INTO user_state VALUES (?, ?, ?, ?)",
                [_row(s, now + self.ttl_s) for s in states.values()],
            )
            conn.execute("DELETE FROM user_state WHERE expires_at <= ?", (now,))

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        with self._db.read() as conn:
            return self._load(conn, user_ids, time.time())

    @staticmethod
    def _load(
        conn: sqlite3.Connection, user_ids: Sequence[str], now: float
    ) -> dict[str, UserState]:
        if not user_ids:
            return {}
        marks = ",".join("?" * len(user_ids))
        rows = conn.execute(
            f"SELECT user_id, state, session FROM user_state WHERE expires_at > ? AND user_id IN ({marks})",
            (now, *user_ids),
        ).fetchall()
        states = {}
        for user_id, blob, session in rows:
            data = orjson.loads(blob)
            states[user_id] = UserState(
                user_id=user_id,
                recent_items=data["recent_items"],
                counters=data["counters"],
                session_vector=None
                if session is None
                else np.frombuffer(session, dtype=np.float32).copy(),
                last_active=data["last_active"],
            )
        return states

    def delete(self, user_id: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM user_state WHERE user_id = ?", (user_id,))


def _row(state: UserState, expires_at: float) -> tuple[str, bytes, bytes | None, float]:
    blob = orjson.dumps(
        {
            "recent_items": state.recent_items,
            "counters": state.counters,
            "last_active": state.last_active,
        }
    )
    session = (
        None if state.session_vector is None else state.session_vector.astype(np.float32).tobytes()
    )
    return state.user_id, blob, session, expires_at
