"""Apache Kafka 4.x in KRaft combined mode (broker and controller in one JVM): one node, or
one node of a cluster whose controllers form a static quorum (``recsys services up
--replicas N``, :mod:`recsys.services.cluster`)."""

from __future__ import annotations

import base64
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from recsys.services.base import Service, ServiceError, conf_text, render_template
from recsys.services.jvm import (
    ensure_jars,
    find_java,
    pinned_version,
    pom_text,
    require_java,
)
from recsys.services.proc import log_tail, run_logged
from shared.settings import Replication

# Kafka 4 brokers need Java 17 or later.
KAFKA_JAVA = range(17, 100)
_FORMAT_TIMEOUT_S = 120


@dataclass(frozen=True)
class KafkaConfig:
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    node_id: int = 1
    num_partitions: int = 4
    internal_partitions: int = 8
    heap_mb: int = 512
    # A cluster: every node's "id@host:controller_port"; empty: one node on its own.
    voters: tuple[str, ...] = ()
    # A cluster's id, the same on every node; None: a new one when the storage is formatted.
    cluster_id: str | None = None
    broker_session_timeout_ms: int = 9000
    broker_heartbeat_ms: int = 2000

    @property
    def replication(self) -> Replication:
        return Replication(max(1, len(self.voters)))


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding (22 characters).

    As Kafka's own ``Uuid.randomUuid`` does, draws again for an id that begins with ``-``
    (a command line would read it as an option; one draw in 64) and for the two ids Kafka
    reserves (all zeros, and the metadata topic's: 0...01).
    """
    reserved = {bytes(16), bytes(15) + b"\x01"}
    while True:
        raw = secrets.token_bytes(16)
        cid = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        if raw not in reserved and not cid.startswith("-"):
            return cid


def _prop(value: object) -> str:
    # java.util.Properties reads a backslash as an escape.
    return str(value).replace("\\", "\\\\")


def render_server_properties(cfg: KafkaConfig, log_dir: Path) -> str:
    quorum = (
        f"controller.quorum.voters={','.join(cfg.voters)}"
        if cfg.voters
        else f"controller.quorum.bootstrap.servers={cfg.host}:{cfg.controller_port}"
    )
    return render_template(
        "server.properties",
        {
            "node_id": cfg.node_id,
            "host": _prop(cfg.host),
            "port": cfg.port,
            "controller_port": cfg.controller_port,
            "quorum": _prop(quorum),
            "log_dirs": _prop(log_dir),
            "num_partitions": cfg.num_partitions,
            "internal_partitions": cfg.internal_partitions,
            "replication": cfg.replication.factor,
            "min_isr": cfg.replication.min_insync,
            "broker_session_timeout_ms": cfg.broker_session_timeout_ms,
            "broker_heartbeat_ms": cfg.broker_heartbeat_ms,
        },
    )


def jvm_args(cfg: KafkaConfig, home: Path, jars: Path) -> list[str]:
    """The JVM options of Kafka's own bin/kafka-server-start.sh, with a smaller heap."""
    return [
        # Grows to heap_mb; starting smaller keeps G1 from making the whole heap resident.
        f"-Xms{cfg.heap_mb // 4}m",
        f"-Xmx{cfg.heap_mb}m",
        "-server",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-XX:MaxInlineLevel=15",
        "-Djava.awt.headless=true",
        # The launcher sets no working directory; keep crash files with the rest of our state.
        f"-XX:ErrorFile={home / 'hs_err_pid%p.log'}",
        f"-Dkafka.logs.dir={home}",
        f"-Dlog4j2.configurationFile={home / 'log4j2.xml'}",
        "-cp",
        f"{jars}/*",
    ]


def server_argv(java: str, cfg: KafkaConfig, home: Path, jars: Path) -> list[str]:
    return [java, *jvm_args(cfg, home, jars), "kafka.Kafka", str(home / "server.properties")]


def format_argv(java: str, cfg: KafkaConfig, home: Path, jars: Path, cluster_id: str) -> list[str]:
    return [
        java,
        *jvm_args(cfg, home, jars),
        "kafka.tools.StorageTool",
        "format",
        # One argument, so that no id can be read as an option.
        f"--cluster-id={cluster_id}",
        f"--config={home / 'server.properties'}",
        # One node formats a dynamic quorum of itself; a cluster's static quorum is in the
        # config (controller.quorum.voters), and the tool refuses both at once.
        *(() if cfg.voters else ("--standalone",)),
    ]


def is_formatted(log_dir: Path) -> bool:
    """StorageTool writes meta.properties (with the cluster id) into every log dir it formats."""
    return (log_dir / "meta.properties").is_file()


class Kafka(Service):
    name: ClassVar[str] = "kafka"
    protocol: ClassVar[str] = "Kafka"
    ready_timeout_s: ClassVar[float] = 60.0

    def __init__(self, state_dir: Path, cache_dir: Path, config: KafkaConfig | None = None) -> None:
        self.config = config or KafkaConfig()
        super().__init__(state_dir, cache_dir, self.config.host, self.config.port)

    @property
    def pinned_version(self) -> str:
        return pinned_version(pom_text("kafka"), "kafka.version")

    def prepare(self) -> list[str]:
        java = find_java()
        require_java(self.name, java, KAFKA_JAVA)
        jars = ensure_jars(self.name, self.pinned_version, self.cache_dir, self.log_path)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.home / "server.properties").write_text(
            render_server_properties(self.config, self.data_dir), encoding="utf-8"
        )
        (self.home / "log4j2.xml").write_text(conf_text("log4j2.xml"), encoding="utf-8")
        if not is_formatted(self.data_dir):
            cluster_id = self.config.cluster_id or new_cluster_id()
            self._format(format_argv(java, self.config, self.home, jars, cluster_id))
        return server_argv(java, self.config, self.home, jars)

    def _format(self, argv: list[str]) -> None:
        try:
            code = run_logged(argv, self.log_path, _FORMAT_TIMEOUT_S, env=self.env())
        except subprocess.TimeoutExpired as err:
            raise ServiceError(
                f"kafka: formatting {self.data_dir} took over {_FORMAT_TIMEOUT_S} s "
                f"(see {self.log_path})"
            ) from err
        if code != 0:
            raise ServiceError(
                f"kafka: formatting {self.data_dir} failed: {log_tail(self.log_path)} "
                f"(see {self.log_path})"
            )

    def probe(self) -> str | None:
        # A metadata-level round trip, not just an open port: the broker accepts connections
        # before it has registered with its controller and can serve requests.
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.address,
            client_id="recsys-services-probe",
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
        )
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        if not cluster.get("brokers"):
            raise ServiceError("kafka: no broker registered yet")
        return None
