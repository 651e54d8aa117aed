"""Where the real services are, for tests that need them.

The test command (``make test``) starts Kafka, Cassandra and Redis on 127.0.0.1 with
``recsys services up``; point these variables elsewhere to test against other servers.
A test marked for a service that does not answer fails (it is never silently skipped):
run ``recsys services up`` or deselect it, e.g. ``-m "not cassandra"``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

KAFKA_URL = os.environ.get("RECSYS_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CASSANDRA_URL = os.environ.get("RECSYS_TEST_CASSANDRA_URL", "cassandra://127.0.0.1:9042")


def unique(prefix: str) -> str:
    """A name no other test (or earlier run against the same servers) uses."""
    return f"{prefix}_{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def cassandra_admin() -> Iterator[Any]:
    """One driver session for creating and dropping test keyspaces."""
    from shared.storage.cassandra.connection import connect, parse_cassandra_url

    cluster, session = connect("test", CASSANDRA_URL, parse_cassandra_url(CASSANDRA_URL))
    yield session
    cluster.shutdown()


@pytest.fixture
def cassandra_keyspace_url(cassandra_admin: Any) -> Iterator[str]:
    """A keyspace of this test's own (created by the store's init_schema), dropped after."""
    keyspace = unique("recsys_test")
    yield f"{CASSANDRA_URL.rstrip('/')}/{keyspace}"
    cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
