"""Parse ``cassandra://host[:port][,host...]/keyspace?replication=N&dc=NAME`` and connect."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cassandra import ConsistencyLevel, DriverException
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    Session,
)
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, tuple_factory

from shared.errors import ConfigError, ServiceUnavailable

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class CassandraTarget:
    """Where a Cassandra-backed store lives."""

    hosts: list[str]
    port: int
    keyspace: str
    replication: int
    datacenter: str


def parse_cassandra_url(url: str) -> CassandraTarget:
    parts = urlsplit(url)
    if parts.scheme != "cassandra" or not parts.netloc:
        raise ConfigError(f"{url}: expected cassandra://host:port/keyspace")
    keyspace = parts.path.strip("/") or "recsys"
    if not _NAME.match(keyspace):
        raise ConfigError(f"{url}: keyspace {keyspace!r} must match {_NAME.pattern}")
    query = parse_qs(parts.query)
    hosts, ports = [], set()
    for hostport in parts.netloc.split(","):
        host, _, port = hostport.partition(":")
        hosts.append(host)
        ports.add(int(port) if port else 9042)
    if len(ports) != 1:
        raise ConfigError(f"{url}: all hosts must share one port")
    return CassandraTarget(
        hosts=hosts,
        port=ports.pop(),
        keyspace=keyspace,
        replication=int(query.get("replication", ["1"])[0]),
        datacenter=query.get("dc", ["datacenter1"])[0],
    )


TUPLES = "tuples"  # the execution profile whose rows are plain tuples


def connect(role: str, url: str, target: CassandraTarget) -> tuple[Cluster, Session]:
    """A session with token-aware routing in the local datacenter; fails with one line."""

    def profile(**extra: Any) -> ExecutionProfile:  # a policy object per profile
        return ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(
                DCAwareRoundRobinPolicy(local_dc=target.datacenter)
            ),
            request_timeout=10.0,
            **extra,
        )

    cluster = Cluster(
        target.hosts,
        port=target.port,
        # Plain tuples for the request path's reads: the default row factory builds a new
        # namedtuple class for every result, 160 us each here, more than the rest of the read.
        execution_profiles={
            EXEC_PROFILE_DEFAULT: profile(),
            TUPLES: profile(row_factory=tuple_factory),
        },
        connect_timeout=5.0,
        protocol_version=5,
    )
    try:
        return cluster, cluster.connect()
    except (NoHostAvailable, DriverException, OSError) as err:
        cluster.shutdown()
        raise ServiceUnavailable(role, url, _first_line(err)) from err


def create_keyspace(session: Session, target: CassandraTarget) -> None:
    """Idempotent; SimpleStrategy is right for one datacenter, NetworkTopology for several."""
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {target.keyspace} WITH replication ="
        f" {{'class': 'SimpleStrategy', 'replication_factor': {target.replication}}}"
    )


def _first_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text.splitlines()[0][:300]


class CassandraStore:
    """Mixin for the Cassandra-backed roles: one session, prepared statements, ping, close."""

    role: str

    def _connect(self, url: str) -> None:
        self._target = parse_cassandra_url(url)
        self._ks = self._target.keyspace
        self._cluster, self._session = connect(self.role, url, self._target)
        self._statements: dict[str, PreparedStatement] = {}

    def _prepared(self, name: str, cql: str) -> PreparedStatement:
        """Prepare once per store; ``{ks}`` in the CQL is the keyspace."""
        if name not in self._statements:
            statement = self._session.prepare(cql.format(ks=self._ks))
            statement.consistency_level = ConsistencyLevel.LOCAL_QUORUM
            self._statements[name] = statement
        return self._statements[name]

    def ping(self) -> None:
        self._session.execute("SELECT release_version FROM system.local")

    def close(self) -> None:
        self._cluster.shutdown()
