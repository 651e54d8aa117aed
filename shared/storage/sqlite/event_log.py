"""Embedded event log: partitioned records and committed group offsets in SQLite."""

from __future__ import annotations

import sqlite3
import time
import zlib
from collections.abc import Callable, Mapping, Sequence

from shared.storage.event_log import (
    DEFAULT_PARTITIONS,
    DEFAULT_TOPIC,
    DeliveryErrback,
    EventLog,
    LogConsumer,
    LogRecord,
)
from shared.storage.sqlite.db import SqliteDb, SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key TEXT NOT NULL, value BLOB NOT NULL, timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)
);
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, PRIMARY KEY (group_id, topic, partition)
);
"""


def partition_for(key: str, partitions: int) -> int:
    """Stable partition of a key: one user's records always share a partition."""
    return zlib.crc32(key.encode()) % partitions


class SqliteEventLog(SqliteStore, EventLog):
    """A file-backed log: enough for the demo and tests; one consumer per group reads all."""

    schema = _SCHEMA

    def __init__(self, url: str, topic: str = DEFAULT_TOPIC) -> None:
        super().__init__(url, topic)
        self._open_db(url)

    def init_schema(self, partitions: int = DEFAULT_PARTITIONS) -> None:
        self._partitions(self.topic, create_with=partitions)

    def create_topic(self, topic: str, partitions: int = DEFAULT_PARTITIONS) -> None:
        self._partitions(topic, create_with=partitions)

    def _partitions(self, topic: str, create_with: int = DEFAULT_PARTITIONS) -> int:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO topics (topic, partitions) VALUES (?, ?)",
                (topic, create_with),
            )
            row = conn.execute("SELECT partitions FROM topics WHERE topic = ?", (topic,)).fetchone()
        return int(row[0])

    def append(self, records: Sequence[tuple[str, bytes]], topic: str | None = None) -> None:
        topic = topic or self.topic
        partitions = self._partitions(topic)
        now_ms = int(time.time() * 1000)
        with self._db.transaction() as conn:
            next_offsets: dict[int, int] = {}
            for key, value in records:
                partition = partition_for(key, partitions)
                if partition not in next_offsets:
                    row = conn.execute(
                        "SELECT COALESCE(MAX(offset) + 1, 0) FROM records"
                        " WHERE topic = ? AND partition = ?",
                        (topic, partition),
                    ).fetchone()
                    next_offsets[partition] = int(row[0])
                offset = next_offsets[partition]
                next_offsets[partition] = offset + 1
                conn.execute(
                    "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                    (topic, partition, offset, key, value, now_ms),
                )

    def publish(
        self,
        records: Sequence[tuple[str, bytes]],
        topic: str | None = None,
        on_error: DeliveryErrback | None = None,
    ) -> None:
        """Appended at once: a local write has no round trip worth batching."""
        try:
            self.append(records, topic)
        except sqlite3.Error as err:  # e.g. the store was closed, the disk is full
            if on_error is not None:
                for _ in records:
                    on_error(err)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Nothing to wait for: ``publish`` wrote synchronously."""

    def consumer(
        self,
        group_id: str,
        topic: str | None = None,
        on_revoke: Callable[[], None] | None = None,
    ) -> LogConsumer:
        """One consumer reads every partition here: nothing is ever revoked."""
        topic = topic or self.topic
        return _SqliteConsumer(self._db, group_id, topic, self._partitions(topic))


class _SqliteConsumer(LogConsumer):
    def __init__(self, db: SqliteDb, group_id: str, topic: str, partitions: int) -> None:
        self._db = db
        self._group = group_id
        self._topic = topic
        self._partitions = partitions
        self._positions = self._committed()

    def _committed(self) -> dict[int, int]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT partition, next_offset FROM group_offsets WHERE group_id = ? AND topic = ?",
                (self._group, self._topic),
            ).fetchall()
        positions = dict.fromkeys(range(self._partitions), 0)
        positions.update({int(p): int(o) for p, o in rows})
        return positions

    def _fetch(self, max_records: int) -> list[LogRecord]:
        records: list[LogRecord] = []
        with self._db.read() as conn:
            for partition, position in self._positions.items():
                if len(records) >= max_records:
                    break
                rows = conn.execute(
                    "SELECT offset, key, value, timestamp_ms FROM records"
                    " WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
                    (self._topic, partition, position, max_records - len(records)),
                ).fetchall()
                records.extend(
                    LogRecord(self._topic, partition, int(o), str(k), bytes(v), int(ts))
                    for o, k, v, ts in rows
                )
        for record in records:
            self._positions[record.partition] = record.offset + 1
        return records

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[LogRecord]:
        deadline = time.monotonic() + timeout_s
        while True:
            records = self._fetch(max_records)
            if records or time.monotonic() >= deadline:
                return records
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def positions(self) -> dict[int, int]:
        return dict(self._positions)

    def commit(self, positions: Mapping[int, int] | None = None) -> None:
        commit = self._positions if positions is None else positions
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO group_offsets VALUES (?, ?, ?, ?) ON CONFLICT (group_id, topic, partition)"
                " DO UPDATE SET next_offset = excluded.next_offset",
                [(self._group, self._topic, p, o) for p, o in commit.items()],
            )

    def lag(self) -> dict[int, int]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT partition, MAX(offset) + 1 FROM records WHERE topic = ? GROUP BY partition",
                (self._topic,),
            ).fetchall()
        ends = {int(p): int(end) for p, end in rows}
        return {p: max(0, ends.get(p, 0) - pos) for p, pos in self._positions.items()}

    def assignment(self) -> list[int]:
        return sorted(self._positions)

    def close(self) -> None:
        """Uncommitted positions are forgotten, as a Kafka consumer leaving the group would."""
