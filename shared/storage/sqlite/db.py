"""One SQLite connection per store, shared by threads behind a lock.

``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` name a file (WAL mode, so
another process, e.g. the nearline worker beside the API, can read while one writes);
``memory://name`` names a private in-memory database that lives as long as its store.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from shared.errors import ConfigError


def database_target(url: str) -> tuple[str, bool]:
    """``(sqlite3 target, is_uri)`` for a ``sqlite://`` or ``memory://`` URL."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        name = parts.netloc or parts.path.strip("/") or "db"
        # A unique name per store: two stores opened from "memory://" never share state.
        return f"file:{name}-{uuid.uuid4().hex}?mode=memory&cache=shared", True
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise ConfigError(f"{url}: use sqlite:///relative/path or sqlite:////absolute/path")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigError(f"{url}: no database file in the URL")
        return path, False
    raise ConfigError(f"{url}: not a sqlite:// or memory:// URL")


class SqliteDb:
    """A locked connection with the pragmas every embedded store wants."""

    def __init__(self, url: str) -> None:
        target, is_uri = database_target(url)
        if not is_uri:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            target, uri=is_uri, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._lock = threading.RLock()
        if not is_uri:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements atomically (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Use the connection for reads."""
        with self._lock:
            yield self._conn

    def script(self, sql: str) -> None:
        """Run DDL (idempotent ``CREATE ... IF NOT EXISTS`` statements)."""
        with self._lock:
            self._conn.executescript(sql)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SqliteStore:
    """Mixin for the embedded stores: one database, its schema, ping and close."""

    schema: ClassVar[str]

    def _open_db(self, url: str) -> None:
        self._db = SqliteDb(url)
        self._db.script(self.schema)

    def ping(self) -> None:
        with self._db.read() as conn:
            conn.execute("SELECT 1").fetchone()

    def init_schema(self) -> None:
        self._db.script(self.schema)

    def close(self) -> None:
        self._db.close()
