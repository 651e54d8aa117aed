"""Embedded candidate store: rows per (version, user) and a one-row live pointer."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator

import orjson

from shared.errors import RecsysError
from shared.storage.candidates import (
    Candidates,
    CandidateStore,
    UnknownVersion,
    VersionInfo,
    decode_features,
    encode_features,
)
from shared.storage.sqlite.db import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candidates (
    version TEXT NOT NULL, user_id TEXT NOT NULL, payload BLOB NOT NULL, features BLOB,
    PRIMARY KEY (version, user_id)
);
CREATE TABLE IF NOT EXISTS candidate_versions (version TEXT PRIMARY KEY, rows INTEGER NOT NULL,
    written_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS live_version (name TEXT PRIMARY KEY, version TEXT NOT NULL);
"""
_BATCH = 5000
_SCAN_PAGE = 500


class SqliteCandidateStore(SqliteStore, CandidateStore):
    """Each write batch is one transaction; activation is one row update."""

    schema = _SCHEMA

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._open_db(url)

    def write(self, version: str, rows: Iterable[Candidates]) -> int:
        total = 0
        iterator = iter(rows)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO candidate_versions VALUES (?, 0, ?) ON CONFLICT DO NOTHING",
                (version, time.time()),
            )
        while batch := list(itertools.islice(iterator, _BATCH)):
            with self._db.transaction() as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO candidates VALUES (?, ?, ?, ?)",
                    [(version, c.user_id, _payload(c), encode_features(c.features)) for c in batch],
                )
                conn.execute(
                    "UPDATE candidate_versions SET rows = rows + ? WHERE version = ?",
                    (len(batch), version),
                )
            total += len(batch)
        return total

    def activate(self, version: str) -> None:
        with self._db.transaction() as conn:
            if (
                conn.execute(
                    "SELECT 1 FROM candidate_versions WHERE version = ?", (version,)
                ).fetchone()
                is None
            ):
                raise UnknownVersion(f"candidate version {version!r} was never written")
            conn.execute("INSERT OR REPLACE INTO live_version VALUES ('candidates', ?)", (version,))

    def live_version(self) -> str | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT version FROM live_version WHERE name = 'candidates'"
            ).fetchone()
        return None if row is None else str(row[0])

    def get(self, user_id: str, version: str | None = None) -> Candidates | None:
        version = version or self.live_version()
        if version is None:
            return None
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT payload, features FROM candidates WHERE version = ? AND user_id = ?",
                (version, user_id),
            ).fetchone()
        return None if row is None else _row(user_id, row[0], row[1])

    def scan(self, version: str, limit: int | None = None) -> Iterator[Candidates]:
        """By user id, a page per query (no read held open between pages)."""

        def rows() -> Iterator[Candidates]:
            after = ""
            while True:
                with self._db.read() as conn:
                    page = conn.execute(
                        "SELECT user_id, payload, features FROM candidates"
                        " WHERE version = ? AND user_id > ? ORDER BY user_id LIMIT ?",
                        (version, after, _SCAN_PAGE),
                    ).fetchall()
                for user_id, payload, features in page:
                    yield _row(str(user_id), payload, features)
                if len(page) < _SCAN_PAGE:
                    return
                after = str(page[-1][0])

        yield from itertools.islice(rows(), limit)  # the page it stops in is fetched whole

    def versions(self) -> list[VersionInfo]:
        live = self.live_version()
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT version, rows FROM candidate_versions ORDER BY written_at, version"
            ).fetchall()
        return [VersionInfo(str(v), int(n), v == live) for v, n in rows]

    def drop(self, version: str) -> None:
        if version == self.live_version():
            raise RecsysError(f"candidate version {version!r} is live; activate another first")
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM candidates WHERE version = ?", (version,))
            conn.execute("DELETE FROM candidate_versions WHERE version = ?", (version,))


def _row(user_id: str, payload: bytes, features: bytes | None) -> Candidates:
    data = orjson.loads(payload)
    return Candidates(
        user_id,
        data["items"],
        data["scores"],
        data["sources"],
        decode_features(features, len(data["items"])),
    )


def _payload(c: Candidates) -> bytes:
    return orjson.dumps({"items": c.items, "scores": c.scores, "sources": c.sources})
