"""Where the real services are, for tests that need them.

The test command (``make test``) starts Kafka, Cassandra and Redis on 127.0.0.1 with
``recsys services up``; point these variables elsewhere to test against other servers.
A test marked for a service that does not answer fails (it is never silently skipped):
run ``recsys services up`` or deselect it, e.g. ``-m "not cassandra"``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.names import CREATED, unique

__all__ = ["unique"]

KAFKA_URL = os.environ.get("RECSYS_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CASSANDRA_URL = os.environ.get("RECSYS_TEST_CASSANDRA_URL", "cassandra://127.0.0.1:9042")


@pytest.fixture(scope="session", autouse=True)
def _delete_test_topics() -> Iterator[None]:
    """Delete the Kafka topics this session's tests created (named by :func:`unique`, and
    their dead-letter topics): a broker that keeps thousands of test partitions takes
    minutes to start. Best effort: a broker that is down has nothing to clean."""
    yield
    if not CREATED:
        return
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=KAFKA_URL.removeprefix("kafka://").split("/")[0].split(","),
            request_timeout_ms=5000,
        )
    except KafkaError:
        return
    try:
        ours = [t for t in admin.list_topics() if t.removesuffix(".dead-letter") in CREATED]
        for start in range(0, len(ours), 100):
            admin.delete_topics(ours[start : start + 100], timeout_ms=30_000)
    except KafkaError:
        pass
    finally:
        admin.close()


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


def _ping(service: str) -> None:
    from shared.storage import factory

    if service == "kafka":
        factory.open_event_log(KAFKA_URL).ping()
    elif service == "redis":
        factory.open_user_state(REDIS_URL, ttl_s=60, recent_cap=1).ping()
    else:
        factory.open_history(CASSANDRA_URL).close()


_REACHABLE: dict[str, str | None] = {}  # service -> None when it answered, else the error


@pytest.fixture(autouse=True)
def _require_marked_services(request: pytest.FixtureRequest) -> None:
    """A test marked for a real service fails at once, saying why, when it does not answer."""
    for service in ("kafka", "cassandra", "redis"):
        if request.node.get_closest_marker(service) is None:
            continue
        if service not in _REACHABLE:
            try:
                _ping(service)
                _REACHABLE[service] = None
            except Exception as err:
                _REACHABLE[service] = str(err)
        if _REACHABLE[service] is not None:
            pytest.fail(
                f"{service} is not reachable ({_REACHABLE[service]}): run `recsys services up`"
                f" or deselect with -m 'not {service}'",
                pytrace=False,
            )


_REPO = Path(__file__).resolve().parents[1]
_MOVIELENS_CANDIDATES = (
    _REPO.parent / "shared" / "datasets" / "movielens-100k",  # the shared copy beside a checkout
    _REPO / "datasets" / "movielens-100k",  # `recsys data download movielens-100k`
)


@pytest.fixture(scope="session")
def movielens_dir_session() -> Path:
    """:func:`movielens_dir` for fixtures wider than one test."""
    return _movielens_dir()


@dataclass(frozen=True)
class OfflineRun:
    """One ``recsys offline run --dataset movielens-100k`` (benchmark split) of the session."""

    home: Path  # its RECSYS_HOME: the registry with the bundle live, the stores
    output: dict[str, Any]  # what --json printed
    recommendations: Path  # --recommendations-out


@pytest.fixture(scope="session")
def ml100k_run(movielens_dir_session: Path, tmp_path_factory: pytest.TempPathFactory) -> OfflineRun:
    """The offline job on MovieLens 100K through the CLI, once per session: the quality test
    checks its metrics, the notebook test analyses its bundle (minutes on 2 busy cores)."""
    home = tmp_path_factory.mktemp("ml100k") / "var"
    recs = home.parent / "recommendations.parquet"
    output = offline_run_cli(home, movielens_dir_session, "--recommendations-out", str(recs))
    return OfflineRun(home, output, recs)


def offline_run_cli(home: Path, movielens_dir: Path, *flags: str) -> dict[str, Any]:
    """``recsys offline run --dataset movielens-100k --json FLAGS`` with ``home`` as
    RECSYS_HOME on ``local[2]``; what it printed, parsed (fails with its stderr)."""
    return offline_cli(
        home, "--dataset", "movielens-100k", *flags, RECSYS_MOVIELENS_DIR=str(movielens_dir)
    )


def offline_cli(home: Path, *args: str, **env: str) -> dict[str, Any]:
    """``recsys offline run --json ARGS`` with ``home`` as RECSYS_HOME on ``local[2]`` and
    the environment variables ``env``; what it printed, parsed (fails with its stderr)."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("recsys")), "offline", "run", "--json", *args],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "RECSYS_HOME": str(home), "RECSYS_SPARK_MASTER": "local[2]", **env},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output: dict[str, Any] = json.loads(done.stdout)
    return output


def bench_cli(home: Path, tier: str, *flags: str) -> tuple[dict[str, Any], Path]:
    """``recsys bench TIER --json FLAGS`` against the test services with ``home`` as
    RECSYS_HOME; what it printed, parsed, and its results folder (fails with its stderr)."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("recsys")), "bench", tier, "--json", *flags,
         "--kafka-url", KAFKA_URL, "--redis-url", REDIS_URL, "--cassandra-url", CASSANDRA_URL],
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "RECSYS_HOME": str(home)},
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    figures: dict[str, Any] = json.loads(done.stdout)
    folder = Path(figures["results_dir"])
    assert folder.parent == home / "bench"
    return figures, folder


@pytest.fixture
def movielens_dir() -> Path:
    """The real MovieLens 100K: $RECSYS_MOVIELENS_DIR, else a known location.

    A configured folder without the data fails the test (a CI typo must not hide tests);
    with nothing configured and nothing found, the test is skipped, saying how to get it.
    """
    return _movielens_dir()


def _movielens_dir() -> Path:
    configured = os.environ.get("RECSYS_MOVIELENS_DIR")
    if configured:
        if not (Path(configured) / "u.data").is_file():
            pytest.fail(f"RECSYS_MOVIELENS_DIR={configured} holds no u.data")
        return Path(configured)
    for candidate in _MOVIELENS_CANDIDATES:
        if (candidate / "u.data").is_file():
            return candidate
    if os.environ.get("CI"):
        pytest.fail("MovieLens 100K not found in CI: .ci/run sets RECSYS_MOVIELENS_DIR")
    pytest.skip(
        "MovieLens 100K not found: set RECSYS_MOVIELENS_DIR or run"
        " `recsys data download movielens-100k`"
    )
