"""Candidates in Cassandra.

``candidates_by_user`` is partitioned by ``(version, bucket)`` with the user as clustering
key: a read is one row by its full key, and dropping a version deletes a fixed number of
partitions instead of scanning the table. The bucket count is stored with the version.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import PreparedStatement

from shared.errors import RecsysError
from shared.storage.candidates import (
    Candidates,
    CandidateStore,
    UnknownVersion,
    VersionInfo,
    decode_features,
    encode_features,
)
from shared.storage.cassandra.connection import TUPLES, CassandraStore, create_keyspace

DEFAULT_BUCKETS = 64
_CHUNK = 2000
_SCAN_PAGE = 200  # rows per page of a scan: a row with feature rows is tens of KiB


def bucket_of(user_id: str, buckets: int) -> int:
    return zlib.crc32(user_id.encode()) % buckets


class CassandraCandidateStore(CassandraStore, CandidateStore):
    """Bulk writes run concurrently; activation is one single-row write."""

    def __init__(self, url: str, buckets: int = DEFAULT_BUCKETS) -> None:
        super().__init__(url)
        self._connect(url)
        self._buckets = buckets
        self._version_buckets: dict[str, int] = {}

    def init_schema(self) -> None:
        create_keyspace(self._session, self._target)
        ks = self._ks
        self._session.execute(
            f"CREATE TABLE IF NOT EXISTS {ks}.candidates_by_user (version text, bucket int,"
            " user_id text, items list<text>, scores list<float>, sources list<text>,"
            " features blob, PRIMARY KEY ((version, bucket), user_id))"
        )
        columns = self._session.execute(
            "SELECT column_name FROM system_schema.columns"
            " WHERE keyspace_name = %s AND table_name = 'candidates_by_user'",
            (self._ks,),
        )
        if "features" not in {row.column_name for row in columns}:  # a table from before it
            self._session.execute(f"ALTER TABLE {ks}.candidates_by_user ADD features blob")
        self._session.execute(
            f"CREATE TABLE IF NOT EXISTS {ks}.candidate_versions (version text PRIMARY KEY,"
            " rows bigint, buckets int, written_at timestamp)"
        )
        self._session.execute(
            f"CREATE TABLE IF NOT EXISTS {ks}.live_pointers (name text PRIMARY KEY, version text)"
        )

    def _buckets_of(self, version: str) -> int | None:
        if version not in self._version_buckets:
            row = self._session.execute(
                self._prepared(
                    "vget", "SELECT buckets FROM {ks}.candidate_versions WHERE version = ?"
                ),
                (version,),
            ).one()
            if row is None:
                return None
            self._version_buckets[version] = int(row.buckets)
        return self._version_buckets[version]

    def write(self, version: str, rows: Iterable[Candidates]) -> int:
        buckets = self._buckets_of(version) or self._buckets
        insert = self._prepared(
            "insert",
            "INSERT INTO {ks}.candidates_by_user"
            " (version, bucket, user_id, items, scores, sources, features)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        total = 0
        iterator = iter(rows)
        while chunk := list(itertools.islice(iterator, _CHUNK)):
            params = [
                (
                    version,
                    bucket_of(c.user_id, buckets),
                    c.user_id,
                    c.items,
                    c.scores,
                    c.sources,
                    encode_features(c.features),
                )
                for c in chunk
            ]
            execute_concurrent_with_args(self._session, insert, params, concurrency=64)
            total += len(chunk)
        previous = self._session.execute(
            self._prepared("vrows", "SELECT rows FROM {ks}.candidate_versions WHERE version = ?"),
            (version,),
        ).one()
        self._session.execute(
            self._prepared(
                "vput",
                "INSERT INTO {ks}.candidate_versions (version, rows, buckets, written_at)"
                " VALUES (?, ?, ?, toTimestamp(now()))",
            ),
            (version, (previous.rows if previous else 0) + total, buckets),
        )
        self._version_buckets[version] = buckets
        return total

    def activate(self, version: str) -> None:
        if self._buckets_of(version) is None:
            raise UnknownVersion(f"candidate version {version!r} was never written")
        self._session.execute(
            self._prepared(
                "live", "INSERT INTO {ks}.live_pointers (name, version) VALUES ('candidates', ?)"
            ),
            (version,),
        )

    def live_version(self) -> str | None:
        row = self._session.execute(
            self._prepared(
                "lget", "SELECT version FROM {ks}.live_pointers WHERE name = 'candidates'"
            )
        ).one()
        return None if row is None else str(row.version)

    def get(self, user_id: str, version: str | None = None) -> Candidates | None:
        version = version or self.live_version()
        buckets = None if version is None else self._buckets_of(version)
        if version is None or buckets is None:
            return None
        row = self._session.execute(
            self._read_statement(),
            (version, bucket_of(user_id, buckets), user_id),
            execution_profile=TUPLES,
        ).one()
        return _candidates(user_id, row)

    reads_async = True

    async def aget(self, user_id: str, version: str | None = None) -> Candidates | None:
        """:meth:`get` on the driver's own IO thread, which hands the row to the event
        loop: no thread of a pool woken per read (on a cache miss of the online tier that
        hop cost more CPU than the query). What is not known yet (the live version, a
        version's bucket count, the prepared statement) is looked up once in a thread."""
        statement = self._statements.get("get")
        buckets = self._version_buckets.get(version) if version is not None else None
        if statement is None or buckets is None:
            return await asyncio.to_thread(self.get, user_id, version)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        response = self._session.execute_async(
            statement, (version, bucket_of(user_id, buckets), user_id), execution_profile=TUPLES
        )
        response.add_callbacks(
            lambda rows: _hand_back(loop, done, rows, None),
            lambda err: _hand_back(loop, done, None, err),
        )
        rows = await done
        return _candidates(user_id, rows[0] if rows else None)

    def _read_statement(self) -> PreparedStatement:
        return self._prepared(
            "get",
            "SELECT items, scores, sources, features FROM {ks}.candidates_by_user"
            " WHERE version = ? AND bucket = ? AND user_id = ?",
        )

    def scan(self, version: str, limit: int | None = None) -> Iterator[Candidates]:
        """Partition by partition (each ``(version, bucket)``), a page of rows at a time. A
        generator: nothing, not even the version's layout, is read before the first row is
        asked for (by the online tier, in its store pool)."""
        buckets = self._buckets_of(version)
        if buckets is None:
            return
        statement = self._prepared(
            "scan",
            "SELECT user_id, items, scores, sources, features FROM {ks}.candidates_by_user"
            " WHERE version = ? AND bucket = ?",
        )

        def rows() -> Iterator[Candidates]:
            for bucket in range(buckets):
                bound = statement.bind((version, bucket))  # the prepared consistency level
                bound.fetch_size = _SCAN_PAGE
                for row in self._session.execute(bound, execution_profile=TUPLES):
                    yield _from_row(row[0], row[1:])

        yield from itertools.islice(rows(), limit)  # no page is fetched past the limit's

    def versions(self) -> list[VersionInfo]:
        live = self.live_version()
        rows = self._session.execute(
            # The keyspace matched a name pattern when the URL was parsed (connection.py).
            f"SELECT version, rows, written_at FROM {self._ks}.candidate_versions"  # noqa: S608
        ).all()
        rows.sort(key=lambda r: (r.written_at, r.version))
        return [VersionInfo(r.version, int(r.rows), r.version == live) for r in rows]

    def drop(self, version: str) -> None:
        if version == self.live_version():
            raise RecsysError(f"candidate version {version!r} is live; activate another first")
        buckets = self._buckets_of(version)
        if buckets is None:
            return
        delete = self._prepared(
            "delete", "DELETE FROM {ks}.candidates_by_user WHERE version = ? AND bucket = ?"
        )
        execute_concurrent_with_args(self._session, delete, [(version, b) for b in range(buckets)])
        self._session.execute(
            self._prepared("vdel", "DELETE FROM {ks}.candidate_versions WHERE version = ?"),
            (version,),
        )
        self._version_buckets.pop(version, None)


def _candidates(user_id: str, row: Any) -> Candidates | None:
    """A row of ``(items, scores, sources, features)`` as :class:`Candidates`, or None."""
    return None if row is None else _from_row(user_id, row)


def _from_row(user_id: str, row: Any) -> Candidates:
    items_col, scores, sources, features = row
    items = list(items_col or [])
    return Candidates(
        user_id,
        items,
        list(scores or []),
        list(sources or []),
        decode_features(features, len(items)),
    )


def _hand_back(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[Any],
    rows: Any,
    err: BaseException | None,
) -> None:
    """On the driver's IO thread: the answer to the reader's event loop, unless that loop
    has closed since (a read still in flight when the API shut down)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, done, rows, err)


def _settle(done: asyncio.Future[Any], rows: Any, err: BaseException | None) -> None:
    """On the event loop: the driver's answer into the awaited future (unless the reader
    gave up waiting, its timeout cancelling the future)."""
    if done.done():
        return
    if err is not None:
        done.set_exception(err)
    else:
        done.set_result(rows)
