"""`recsys services up --replicas N`'s pure parts: the replication policy, the cluster's
layout, each node's rendered config, and the order its nodes start in."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from recsys.services import manager
from recsys.services.base import Service, ServiceError, State, Status
from recsys.services.cassandra import Cassandra, render_cassandra_yaml
from recsys.services.cluster import (
    ClusterLayout,
    cluster_dir,
    cluster_services,
    free_port,
    kafka_cluster_id,
    layout_for,
)
from recsys.services.kafka import Kafka, format_argv, render_server_properties
from recsys.services.redis_server import Redis
from shared.settings import Replication
from shared.storage.cassandra.connection import parse_cassandra_url
from tests.unit.test_services_config import parse_properties


@pytest.mark.parametrize(
    ("nodes", "factor", "min_isr", "write", "read"),
    [
        (1, 1, 1, "LOCAL_QUORUM", "LOCAL_QUORUM"),
        (2, 2, 1, "LOCAL_ONE", "LOCAL_ONE"),
        (3, 3, 2, "LOCAL_QUORUM", "LOCAL_QUORUM"),
        (5, 3, 2, "LOCAL_QUORUM", "LOCAL_QUORUM"),
    ],
)
def test_replication_survives_one_node_where_it_can(
    nodes: int, factor: int, min_isr: int, write: str, read: str
) -> None:
    policy = Replication(nodes)
    assert (policy.factor, policy.min_insync) == (factor, min_isr)
    assert (policy.write_consistency, policy.read_consistency) == (write, read)
    if factor >= 2:
        # One node down still leaves enough copies for a write and a read ...
        quorum = {"LOCAL_ONE": 1, "LOCAL_QUORUM": factor // 2 + 1}
        assert quorum[write] <= factor - 1 and quorum[read] <= factor - 1
        assert policy.min_insync <= factor - 1
    if factor == 3:
        # ... and with 3 copies a read overlaps every acknowledged write.
        assert quorum[write] + quorum[read] > factor


def test_a_cassandra_url_without_replication_leaves_it_to_the_policy() -> None:
    assert parse_cassandra_url("cassandra://127.0.0.2:9042,127.0.0.3:9042/ks").replication is None
    assert parse_cassandra_url("cassandra://127.0.0.1/ks?replication=2").replication == 2


def test_layout_puts_node_i_on_its_own_loopback_address() -> None:
    layout = layout_for(3)
    assert (layout.kafka_nodes, layout.cassandra_nodes) == (3, 3)
    assert layout.kafka_url == "kafka://127.0.0.2:9092,127.0.0.3:9092,127.0.0.4:9092"
    assert layout.cassandra_url == "cassandra://127.0.0.2:9042,127.0.0.3:9042,127.0.0.4:9042"
    assert layout.redis_url == "redis://127.0.0.2:6379/0"
    assert layout_for(5).cassandra_nodes == 3  # three copies are all the policy keeps
    with pytest.raises(ServiceError):
        layout_for(1)
    with pytest.raises(ServiceError, match=r"127\.0\.0\.1"):
        ClusterLayout(first_address=1)


def test_cluster_nodes_have_their_own_dirs_addresses_and_quorum(tmp_path: Path) -> None:
    folder = cluster_dir(tmp_path, 3)
    services = cluster_services(None, folder, tmp_path / "cache", layout_for(3))
    kafkas = [s for s in services if isinstance(s, Kafka)]
    cassandras = [s for s in services if isinstance(s, Cassandra)]
    redis = [s for s in services if isinstance(s, Redis)]
    assert len(kafkas) == len(cassandras) == 3 and len(redis) == 1
    homes = {s.home for s in services if not isinstance(s, Redis)}
    assert len(homes) == 6 and all(h.is_relative_to(tmp_path / "replicas-3") for h in homes)
    assert len({s.marker for s in services}) == 7  # each process recognised as its own
    assert [s.address for s in kafkas] == ["127.0.0.2:9092", "127.0.0.3:9092", "127.0.0.4:9092"]
    assert redis[0].address == "127.0.0.2:6379"
    # One cluster id for every Kafka node, kept for the next `up`.
    assert {k.config.cluster_id for k in kafkas} == {kafka_cluster_id(folder)}

    props = parse_properties(render_server_properties(kafkas[1].config, tmp_path / "data"))
    assert props["node.id"] == "2"
    assert props["listeners"] == "PLAINTEXT://127.0.0.3:9092,CONTROLLER://127.0.0.3:9093"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.2:9093,2@127.0.0.3:9093,3@127.0.0.4:9093"
    )
    assert "controller.quorum.bootstrap.servers" not in props
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "3", key
    for key in (
        "min.insync.replicas",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "2", key
    fmt = format_argv("java", kafkas[1].config, kafkas[1].home, tmp_path, "cid")
    assert "--standalone" not in fmt  # a static quorum: the tool refuses both

    conf = yaml.safe_load(render_cassandra_yaml(cassandras[2].config, cassandras[2].dirs))
    assert conf["listen_address"] == conf["rpc_address"] == "127.0.0.4"
    assert conf["cluster_name"] == "tiered-recsys-replicas"
    assert conf["hinted_handoff_enabled"] is True
    seeds = conf["seed_provider"][0]["parameters"][0]["seeds"]
    assert seeds == "127.0.0.2:7000,127.0.0.3:7000,127.0.0.4:7000"
    assert [c.config.jmx_port for c in cassandras] == [7201, 7202, 7203]


def test_single_node_config_is_unchanged_by_the_cluster_options(tmp_path: Path) -> None:
    props = parse_properties(render_server_properties(Kafka(tmp_path, tmp_path).config, tmp_path))
    assert props["min.insync.replicas"] == "1"
    assert props["broker.session.timeout.ms"] == "9000"
    single = Cassandra(tmp_path, tmp_path)
    conf = yaml.safe_load(render_cassandra_yaml(single.config, single.dirs))
    assert conf["hinted_handoff_enabled"] is False
    assert conf["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:7000"


def test_only_kafka_cassandra_and_redis_have_a_replicated_setup(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="prometheus"):
        cluster_services(["prometheus"], tmp_path, tmp_path, layout_for(2))
    only = cluster_services(["cassandra"], tmp_path, tmp_path, layout_for(2))
    assert [s.address for s in only] == ["127.0.0.2:9042", "127.0.0.3:9042"]


class _Fake(Service):
    name: ClassVar[str] = "fake"
    protocol: ClassVar[str] = "none"
    ready_timeout_s: ClassVar[float] = 1.0

    def prepare(self) -> list[str]:
        return []

    def probe(self) -> str | None:
        return None


class _Serial(_Fake):
    name: ClassVar[str] = "serial"
    one_at_a_time: ClassVar[bool] = True


def test_up_starts_one_at_a_time_nodes_in_order_and_the_rest_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher's ordering only (no server is started): Cassandra's nodes one after the
    other, every other service beside them."""
    running: set[str] = set()
    overlaps: list[tuple[str, set[str]]] = []
    lock = threading.Lock()

    def fake_up(svc: Service) -> manager.Outcome:
        with lock:
            overlaps.append((svc.address, set(running)))
            running.add(svc.address)
        time.sleep(0.05)
        with lock:
            running.discard(svc.address)
        status = Status(svc.name, svc.address, State.HEALTHY)
        return manager.Outcome(status, manager.Action.STARTED, 0.05)

    monkeypatch.setattr(manager, "up_one", fake_up)
    serial = [_Serial(tmp_path / str(i), tmp_path, f"127.0.0.{2 + i}", 1) for i in range(3)]
    other = [_Fake(tmp_path / "o", tmp_path, "127.0.0.2", 2)]
    results = manager.up([*serial, *other])
    assert [r.status.address for r in results if isinstance(r, manager.Outcome)] == [
        s.address for s in [*serial, *other]
    ]
    for address, others in overlaps:
        serial_addresses = {s.address for s in serial}
        if address in serial_addresses:
            assert not (others & serial_addresses), (address, others)
    assert any(others for _, others in overlaps)  # the other service ran beside them


def test_free_port_is_free_on_every_address() -> None:
    hosts = ["127.0.0.2", "127.0.0.3"]
    port = free_port(hosts)
    for host in hosts:
        with socket.socket() as sock:
            sock.bind((host, port))
