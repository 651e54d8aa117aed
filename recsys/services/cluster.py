"""Replicated services on one machine: ``recsys services up --replicas N``.

A Kafka cluster of N KRaft nodes (each a broker and one of the controllers of a static
quorum) and a Cassandra cluster of N nodes (at most :data:`MAX_CASSANDRA_NODES`, every one a
seed), node ``i`` of each on the loopback address ``127.0.0.<first_address + i>`` with the
services' usual ports, plus one Redis on the first address. The single-node services bind
127.0.0.1 only, so both setups run side by side. Files live in
``<state_dir>/replicas-N/node-<i>/<service>/`` (the cluster's Kafka id beside them), apart
from the single-node services' and from a cluster of another size.

How many copies each topic and keyspace keeps, and the consistency levels, come from
:class:`shared.settings.Replication` for the cluster's node count.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recsys.services.base import Service, ServiceError
from recsys.services.cassandra import Cassandra, CassandraConfig
from recsys.services.kafka import Kafka, KafkaConfig, new_cluster_id
from recsys.services.proc import exclusive
from recsys.services.redis_server import Redis, RedisConfig

CLUSTER_NAMES: tuple[str, ...] = ("kafka", "cassandra", "redis")
# Three copies are all that the project's replication asks for (Replication.factor).
MAX_CASSANDRA_NODES = 3


@dataclass(frozen=True)
class ClusterLayout:
    """Where each node of a cluster listens."""

    kafka_nodes: int = 3
    cassandra_nodes: int = 3
    first_address: int = 2  # node i on 127.0.0.<first_address + i>
    kafka_port: int = 9092
    controller_port: int = 9093
    native_port: int = 9042
    storage_port: int = 7000
    # JMX binds the loopback address 127.0.0.1 whatever the node's own: one port per node,
    # above the single node's 7199.
    jmx_first_port: int = 7201
    redis_port: int = 6379
    cluster_name: str = "tiered-recsys-replicas"
    cassandra_heap_mb: int = 1024
    kafka_heap_mb: int = 512

    def __post_init__(self) -> None:
        if self.kafka_nodes < 1 or self.cassandra_nodes < 1:
            raise ServiceError("a cluster needs at least one node of each service")
        last = self.first_address + max(self.kafka_nodes, self.cassandra_nodes) - 1
        if self.first_address < 2 or last > 254:
            raise ServiceError(
                f"cluster addresses 127.0.0.{self.first_address}-{last} must stay within"
                " 127.0.0.2-254 (127.0.0.1 is the single-node services')"
            )

    def host(self, node: int) -> str:
        return f"127.0.0.{self.first_address + node}"

    @property
    def kafka_hosts(self) -> list[str]:
        return [f"{self.host(i)}:{self.kafka_port}" for i in range(self.kafka_nodes)]

    @property
    def cassandra_hosts(self) -> list[str]:
        return [f"{self.host(i)}:{self.native_port}" for i in range(self.cassandra_nodes)]

    @property
    def kafka_url(self) -> str:
        return f"kafka://{','.join(self.kafka_hosts)}"

    @property
    def cassandra_url(self) -> str:
        return f"cassandra://{','.join(self.cassandra_hosts)}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host(0)}:{self.redis_port}/0"


def layout_for(replicas: int) -> ClusterLayout:
    """The layout of ``recsys services up --replicas N``: N Kafka nodes, N Cassandra nodes
    (at most three) on 127.0.0.2 and up, with the services' usual ports."""
    if replicas < 2:
        raise ServiceError(f"--replicas {replicas}: a cluster has 2 nodes or more")
    return ClusterLayout(kafka_nodes=replicas, cassandra_nodes=min(replicas, MAX_CASSANDRA_NODES))


def cluster_dir(state_dir: Path, replicas: int) -> Path:
    """The files of ``--replicas N``'s cluster, apart from any other."""
    return Path(os.path.abspath(state_dir)) / f"replicas-{replicas}"


def kafka_cluster_id(folder: Path) -> str:
    """The cluster's KRaft id, drawn once and kept in ``folder``: every node is formatted
    with it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kafka-cluster-id"
    with exclusive(folder / ".kafka-cluster-id.lock"):
        if not path.is_file():
            path.write_text(new_cluster_id() + "\n", encoding="ascii")
        return path.read_text(encoding="ascii").strip()


def kafka_nodes(folder: Path, cache_dir: Path, layout: ClusterLayout) -> list[Kafka]:
    voters = tuple(
        f"{i + 1}@{layout.host(i)}:{layout.controller_port}" for i in range(layout.kafka_nodes)
    )
    cluster_id = kafka_cluster_id(folder)
    return [
        Kafka(
            folder / f"node-{i + 1}",
            cache_dir,
            KafkaConfig(
                host=layout.host(i),
                port=layout.kafka_port,
                controller_port=layout.controller_port,
                node_id=i + 1,
                heap_mb=layout.kafka_heap_mb,
                voters=voters,
                cluster_id=cluster_id,
                # A broker that died loses its partitions' leadership after 3 s, not 9 s.
                broker_session_timeout_ms=3000,
                broker_heartbeat_ms=500,
            ),
        )
        for i in range(layout.kafka_nodes)
    ]


def cassandra_nodes(folder: Path, cache_dir: Path, layout: ClusterLayout) -> list[Cassandra]:
    seeds = tuple(f"{layout.host(i)}:{layout.storage_port}" for i in range(layout.cassandra_nodes))
    return [
        Cassandra(
            folder / f"node-{i + 1}",
            cache_dir,
            CassandraConfig(
                host=layout.host(i),
                native_port=layout.native_port,
                storage_port=layout.storage_port,
                jmx_port=layout.jmx_first_port + i,
                cluster_name=layout.cluster_name,
                heap_mb=layout.cassandra_heap_mb,
                seeds=seeds,
                hinted_handoff=layout.cassandra_nodes > 1,
            ),
        )
        for i in range(layout.cassandra_nodes)
    ]


def cluster_services(
    names: Sequence[str] | None, folder: Path, cache_dir: Path, layout: ClusterLayout
) -> list[Service]:
    """The nodes of the named services (default: all three), Kafka's, then Cassandra's,
    then Redis."""
    unknown = [n for n in names or () if n not in CLUSTER_NAMES]
    if unknown:
        raise ServiceError(
            f"{unknown[0]!r} has no replicated setup; choose from {', '.join(CLUSTER_NAMES)}"
        )
    wanted = set(names or CLUSTER_NAMES)
    services: list[Service] = []
    if "kafka" in wanted:
        services += kafka_nodes(folder, cache_dir, layout)
    if "cassandra" in wanted:
        services += cassandra_nodes(folder, cache_dir, layout)
    if "redis" in wanted:
        services.append(
            Redis(folder / "node-1", cache_dir, RedisConfig(layout.host(0), layout.redis_port))
        )
    return services


def free_port(hosts: Sequence[str]) -> int:
    """A TCP port free on every one of ``hosts`` now (a benchmark's cluster of its own)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
        held = []
        try:
            for host in hosts[1:]:
                sock = socket.socket()
                held.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return port
    raise ServiceError(f"no port free on all of {', '.join(hosts)}")
