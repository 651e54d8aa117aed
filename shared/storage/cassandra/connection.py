"""Parse ``cassandra://host[:port][,host...]/keyspace?replication=N&dc=NAME`` and connect.

How many copies a keyspace keeps and what reads and writes wait for come from
:class:`shared.settings.Replication`: by default one copy per node the driver sees, at most
three (``?replication=N`` overrides the count); statements then use the consistency levels
that policy gives for the keyspace's copies.
"""

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
from shared.settings import Replication

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class CassandraTarget:
    """Where a Cassandra-backed store lives."""

    hosts: list[str]
    port: int
    keyspace: str
    replication: int | None  # None: Replication's factor for the nodes the driver sees
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
        replication=int(query["replication"][0]) if "replication" in query else None,
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


def keyspace_replication(session: Session, target: CassandraTarget) -> int:
    """Copies a new keyspace keeps: the URL's ``?replication=N``, else one per node the
    driver sees (at most three, :class:`shared.settings.Replication`)."""
    if target.replication is not None:
        return target.replication
    return Replication(len(session.cluster.metadata.all_hosts())).factor


def create_keyspace(session: Session, target: CassandraTarget) -> None:
    """Idempotent; SimpleStrategy is right for one datacenter, NetworkTopology for several."""
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {target.keyspace} WITH replication ="
        f" {{'class': 'SimpleStrategy', 'replication_factor': {keyspace_replication(session, target)}}}"
    )


def replication_of(session: Session, target: CassandraTarget) -> Replication:
    """The policy for the keyspace's copies as the cluster holds them (the URL's or the
    node count's while it does not exist yet)."""
    meta = session.cluster.metadata.keyspaces.get(target.keyspace)
    strategy = getattr(meta, "replication_strategy", None)
    factor = getattr(strategy, "replication_factor", None)
    if isinstance(factor, int) and factor > 0:
        return Replication(factor)
    return Replication(keyspace_replication(session, target))


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
            policy = replication_of(self._session, self._target)
            reads = cql.lstrip().upper().startswith("SELECT")
            level = policy.read_consistency if reads else policy.write_consistency
            statement.consistency_level = ConsistencyLevel.name_to_value[level]
            self._statements[name] = statement
        return self._statements[name]

    def ping(self) -> None:
        self._session.execute("SELECT release_version FROM system.local")

    def close(self) -> None:
        self._cluster.shutdown()
