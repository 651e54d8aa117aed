"""Event history in Cassandra: ``events_by_user``, newest first within a user's partition.

The clustering key ``(ts, event_id)`` comes from the event itself, so writing a replayed
event upserts the same row: idempotent without a read before the write.

Writes go as small UNLOGGED batches, executed concurrently: the Python driver spends most
of its CPU per request, not per row: batches of up to ten users' rows take about a sixth of
the client CPU of one request per row (0.6-0.7 s against 3.9 s per 10,000 events). Rows are sorted by partition token first, so a user's rows share a
batch and each batch covers a narrow token range (few replicas on a real cluster). A batch
stays under the server's warning thresholds, ``batch_size_warn_threshold`` (5 KiB by
default, by an estimate of each row's size) and ``unlogged_batch_across_partitions_warn_
threshold`` (10 partitions): past them the server logs and returns a warning per batch,
which the driver logs again in the client. Unlogged means no atomicity across the batch,
which nothing here needs: every row is idempotent on its own and a failed batch is retried
whole.

An impression's ``shown`` list is kept inside the ``context`` JSON under ``"shown"``, as
the event lake keeps it (:meth:`~shared.events.Event.lake_context`, split back out by
:meth:`~shared.events.Event.split_lake_context`), so the table is the one it always was.
A row is bigger by the list (some 65 bytes an item), which the batch-size estimate
counts; a lone row over the threshold goes as a batch of one partition, which the server
does not size-check (CASSANDRA-10876).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from cassandra import ConsistencyLevel
from cassandra.cmurmur3 import murmur3
from cassandra.concurrent import execute_concurrent
from cassandra.query import (
    BatchStatement,
    BatchType,
    PreparedStatement,
    SimpleStatement,
    Statement,
)

from shared.events import Event
from shared.storage.cassandra.connection import CassandraStore, create_keyspace
from shared.storage.history import EventHistoryStore

# Cassandra's default batch_size_warn_threshold is 5 KiB of mutation size; it counts about
# 130 bytes per row of this table on top of the text (measured), so 160 leaves a margin.
BATCH_BYTES = 4096
ROW_OVERHEAD_BYTES = 160
BATCH_PARTITIONS = 10  # Cassandra's default unlogged_batch_across_partitions_warn_threshold
CONCURRENCY = 16  # batches in flight per append

_Row = tuple[str, int, str, str, str, float | None, str]


class CassandraEventHistoryStore(CassandraStore, EventHistoryStore):
    """Writes are concurrent unlogged batches; reads are one partition slice."""

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
        rows = [
            (
                e.user_id,
                round(e.timestamp * 1000),  # the driver takes numbers as epoch milliseconds
                e.event_id,
                e.item_id,
                e.type.value,
                e.value,
                # An impression's shown list rides in the context JSON, as in the event lake:
                # no new column, so a table created before the list existed takes it as is.
                orjson.dumps(e.lake_context()).decode(),
            )
            for e in events
        ]
        statements = [(s, None) for s in _batches(insert, rows)]
        execute_concurrent(self._session, statements, concurrency=CONCURRENCY)

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
        return [_event(user_id, r) for r in rows]

    def event_ids_at_all(self, user_id: str) -> set[str]:
        """The user's event ids as a read at consistency ALL returns them: every replica is
        asked, so a row that any one of them holds comes back (and is repaired). For checks
        of what a quorum read found; it fails while a replica is down."""
        query = SimpleStatement(
            f"SELECT event_id FROM {self._ks}.events_by_user WHERE user_id = %s",  # noqa: S608 (a checked keyspace name)
            consistency_level=ConsistencyLevel.ALL,
        )
        return {r.event_id for r in self._session.execute(query, (user_id,))}

    def users(self) -> Iterator[str]:
        # DISTINCT on the partition key reads one row per partition, paged by the driver.
        rows = self._session.execute(f"SELECT DISTINCT user_id FROM {self._ks}.events_by_user")  # noqa: S608 (a checked keyspace name)
        return (r.user_id for r in rows)


def _event(user_id: str, row: Any) -> Event:
    context, shown = Event.split_lake_context(orjson.loads(row.context or "{}"))
    return Event(
        event_id=row.event_id,
        user_id=user_id,
        item_id=row.item_id,
        type=row.type,
        value=row.value,
        timestamp=row.ts_ms / 1000,
        context=context,
        shown=shown,
    )


def _row_bytes(row: _Row) -> int:
    user_id, _, event_id, item_id, kind, _, context = row
    return (
        ROW_OVERHEAD_BYTES + len(user_id) + len(event_id) + len(item_id) + len(kind) + len(context)
    )


def _batches(insert: PreparedStatement, rows: list[_Row]) -> Iterator[Statement]:
    """Rows in token order, cut into unlogged batches within the server's warning thresholds."""
    rows.sort(key=lambda row: (murmur3(row[0].encode()), row[0]))
    batch: BatchStatement | None = None
    size, partitions, last_user = 0, 0, None
    for row in rows:
        row_size = _row_bytes(row)
        new_partition = row[0] != last_user
        if batch is not None and (
            size + row_size > BATCH_BYTES or (new_partition and partitions == BATCH_PARTITIONS)
        ):
            yield batch
            batch = None
        if batch is None:
            batch = BatchStatement(BatchType.UNLOGGED, consistency_level=insert.consistency_level)
            size, partitions, new_partition = 0, 0, True
        batch.add(insert, row)
        size += row_size
        partitions += new_partition
        last_user = row[0]
    if batch is not None:
        yield batch
