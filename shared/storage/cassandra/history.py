"""Event history in Cassandra: ``events_by_user``, newest first within a user's partition.

The clustering key ``(ts, event_id)`` comes from the event itself, so writing a replayed
event upserts the same row: idempotent without a read before the write.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from cassandra.concurrent import execute_concurrent_with_args

from shared.events import Event
from shared.storage.cassandra.connection import CassandraStore, create_keyspace
from shared.storage.history import EventHistoryStore


class CassandraEventHistoryStore(CassandraStore, EventHistoryStore):
    """Writes are concurrent per batch; reads are one partition slice."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._connect(url)

    def init_schema(self) -> None:
        create_keyspace(self._session, self._target)
        self._session.execute(
            f"CREATE TABLE IF NOT EXISTS {self._ks}.events_by_user (user_id text, ts timestamp,"
            " event_id text, item_id text, type text, value double, context text,"
            " PRIMARY KEY ((user_id), ts, event_id)) WITH CLUSTERING ORDER BY (ts DESC, event_id ASC)"
        )

    def append(self, events: Sequence[Event]) -> None:
        insert = self._prepared(
            "insert",
            "INSERT INTO {ks}.events_by_user (user_id, ts, event_id, item_id, type, value, context)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        params = [
            (
                e.user_id,
                round(e.timestamp * 1000),  # the driver takes numbers as epoch milliseconds
                e.event_id,
                e.item_id,
                e.type.value,
                e.value,
                orjson.dumps(e.context).decode(),
            )
            for e in events
        ]
        execute_concurrent_with_args(self._session, insert, params, concurrency=64)

    def for_user(self, user_id: str, limit: int = 100, since: float | None = None) -> list[Event]:
        select = (
            "SELECT toUnixTimestamp(ts) AS ts_ms, event_id, item_id, type, value, context"
            " FROM {ks}.events_by_user WHERE user_id = ?"
        )
        if since is None:
            rows = self._session.execute(
                self._prepared("recent", select + " LIMIT ?"), (user_id, limit)
            )
        else:
            rows = self._session.execute(
                self._prepared("since", select + " AND ts >= ? LIMIT ?"),
                (user_id, round(since * 1000), limit),
            )
        return [
            Event(
                event_id=r.event_id,
                user_id=user_id,
                item_id=r.item_id,
                type=r.type,
                value=r.value,
                timestamp=r.ts_ms / 1000,
                context=orjson.loads(r.context or "{}"),
            )
            for r in rows
        ]
