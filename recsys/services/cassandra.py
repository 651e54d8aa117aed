"""Apache Cassandra 5.0, one node started straight from its jars (no bin/cassandra script):
alone, or one node of a cluster (``recsys services up --replicas N``,
:mod:`recsys.services.cluster`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from recsys.services.base import Service, conf_text, render_template
from recsys.services.jvm import (
    ensure_jars,
    find_jar,
    find_java,
    pinned_version,
    pom_text,
    require_java,
)

# Cassandra 5.0 runs on Java 11 and 17 only.
CASSANDRA_JAVA = range(11, 18)

# From Cassandra 5.0's conf/jvm17-server.options: the JDK internals it reaches into
# (off-heap memory, JMX, Chronicle queues, the CQL UDF compiler). Without them it fails
# at start-up with InaccessibleObjectException on Java 17.
JAVA17_MODULE_FLAGS: tuple[str, ...] = (
    "-Djdk.attach.allowAttachSelf=true",
    *(
        f"--add-exports={m}=ALL-UNNAMED"
        for m in (
            "java.base/jdk.internal.misc",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "java.base/java.lang.ref",
            "jdk.unsupported/sun.misc",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.attach/sun.tools.attach",
        )
    ),
    *(
        f"--add-opens={m}=ALL-UNNAMED"
        for m in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "jdk.compiler/com.sun.tools.javac",
            "java.base/java.lang",
            "java.base/java.util",
            "java.base/java.nio",
        )
    ),
    # Netty: direct buffers through Unsafe, and the pre-4.1.75 allocator defaults.
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
)


@dataclass(frozen=True)
class CassandraConfig:
    host: str = "127.0.0.1"
    native_port: int = 9042
    storage_port: int = 7000
    jmx_port: int = 7199
    cluster_name: str = "tiered-recsys"
    heap_mb: int = 1024
    # A cluster: every seed's "host:storage_port"; empty: this node alone is its seed.
    seeds: tuple[str, ...] = ()
    hinted_handoff: bool = False


@dataclass(frozen=True)
class CassandraDirs:
    """Every folder the node writes, all under ``<state>/cassandra/``."""

    home: Path

    @property
    def conf(self) -> Path:
        return self.home / "conf"

    @property
    def root(self) -> Path:
        return self.home / "data"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def commitlog(self) -> Path:
        return self.root / "commitlog"

    @property
    def hints(self) -> Path:
        return self.root / "hints"

    @property
    def saved_caches(self) -> Path:
        return self.root / "saved_caches"

    @property
    def cdc_raw(self) -> Path:
        return self.root / "cdc_raw"

    def writable(self) -> tuple[Path, ...]:
        return (self.data, self.commitlog, self.hints, self.saved_caches, self.cdc_raw)


def _yaml_str(value: object) -> str:
    # A JSON string is a valid double-quoted YAML scalar, whatever the path contains.
    return json.dumps(str(value))


def render_cassandra_yaml(cfg: CassandraConfig, dirs: CassandraDirs) -> str:
    return render_template(
        "cassandra.yaml",
        {
            "cluster_name": _yaml_str(cfg.cluster_name),
            "seeds": ",".join(cfg.seeds) or f"{cfg.host}:{cfg.storage_port}",
            "hinted_handoff": "true" if cfg.hinted_handoff else "false",
            "host": cfg.host,
            "storage_port": cfg.storage_port,
            "native_port": cfg.native_port,
            "data_dir": _yaml_str(dirs.data),
            "commitlog_dir": _yaml_str(dirs.commitlog),
            "hints_dir": _yaml_str(dirs.hints),
            "saved_caches_dir": _yaml_str(dirs.saved_caches),
            "cdc_raw_dir": _yaml_str(dirs.cdc_raw),
        },
    )


def jvm_args(cfg: CassandraConfig, dirs: CassandraDirs, jamm: Path) -> list[str]:
    """Options of Cassandra's jvm-server.options and jvm17-server.options that matter here.

    Left out on purpose: -XX:+AlwaysPreTouch (it would make the whole heap resident at once)
    and the 16 MB G1 regions meant for large heaps.
    """
    return [
        # The heap may grow to heap_mb but starts at a quarter: with -Xms equal to -Xmx, G1
        # spreads its young generation over the whole heap and makes all of it resident.
        f"-Xms{cfg.heap_mb // 4}m",
        f"-Xmx{cfg.heap_mb}m",
        "-Xss256k",
        "-XX:+UseG1GC",
        "-XX:+ParallelRefProcEnabled",
        "-XX:MaxTenuringThreshold=1",
        "-XX:G1RSetUpdatingPauseTimePercent=5",
        "-XX:MaxGCPauseMillis=300",
        "-XX:+UseThreadPriorities",
        "-XX:+PerfDisableSharedMem",
        # Its own start-up check asks for this: a node out of memory should die, not limp.
        "-XX:+ExitOnOutOfMemoryError",
        f"-XX:ErrorFile={dirs.home / 'hs_err_pid%p.log'}",
        # Every collection with its pause, as the stock options log them (5 x 10 MB at most).
        f"-Xlog:gc:file={dirs.home / 'gc.log'}:time,uptime:filecount=5,filesize=10m",
        "-Djava.net.preferIPv4Stack=true",
        # jamm measures object sizes for memtable accounting; without the agent it guesses.
        f"-javaagent:{jamm}",
        *JAVA17_MODULE_FLAGS,
        "-Dcassandra-foreground=yes",
        f"-Dcassandra.config={dirs.conf.joinpath('cassandra.yaml').as_uri()}",
        f"-Dlogback.configurationFile={dirs.conf / 'logback.xml'}",
        f"-Dcassandra.storagedir={dirs.root}",
        f"-Dcassandra.logdir={dirs.home}",
        f"-Dcassandra.jmx.local.port={cfg.jmx_port}",
        # One node: there is no gossip to wait for; a cluster's nodes start one at a time,
        # each a seed, and the driver learns of the others as they come.
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    ]


def server_argv(java: str, cfg: CassandraConfig, dirs: CassandraDirs, jars: Path) -> list[str]:
    return [
        java,
        *jvm_args(cfg, dirs, find_jar(jars, "jamm")),
        "-cp",
        # conf first, as bin/cassandra does, so the node finds its config files as resources.
        f"{dirs.conf}:{jars}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]


class Cassandra(Service):
    name: ClassVar[str] = "cassandra"
    protocol: ClassVar[str] = "CQL"
    # 15-40 s on 2 idle cores; several minutes when tests run beside it.
    ready_timeout_s: ClassVar[float] = 240.0
    stop_timeout_s: ClassVar[float] = 90.0
    # The nodes of a cluster start one after the other: concurrent first starts of nodes
    # taking their own tokens may collide, and on 2 cores they only slow each other.
    one_at_a_time: ClassVar[bool] = True

    def __init__(
        self, state_dir: Path, cache_dir: Path, config: CassandraConfig | None = None
    ) -> None:
        self.config = config or CassandraConfig()
        super().__init__(state_dir, cache_dir, self.config.host, self.config.native_port)
        self.dirs = CassandraDirs(self.home)

    @property
    def pinned_version(self) -> str:
        return pinned_version(pom_text("cassandra"), "cassandra.version")

    def prepare(self) -> list[str]:
        java = find_java()
        require_java(self.name, java, CASSANDRA_JAVA)
        jars = ensure_jars(self.name, self.pinned_version, self.cache_dir, self.log_path)
        for folder in (self.dirs.conf, *self.dirs.writable()):
            folder.mkdir(parents=True, exist_ok=True)
        (self.dirs.conf / "cassandra.yaml").write_text(
            render_cassandra_yaml(self.config, self.dirs), encoding="utf-8"
        )
        (self.dirs.conf / "logback.xml").write_text(conf_text("logback.xml"), encoding="utf-8")
        return server_argv(java, self.config, self.dirs, jars)

    def probe(self) -> str | None:
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import WhiteListRoundRobinPolicy

        # Whitelist the one address: no datacenter name to guess, no other peers to discover.
        profile = ExecutionProfile(
            load_balancing_policy=WhiteListRoundRobinPolicy([self.host]), request_timeout=5.0
        )
        cluster = Cluster(
            [self.host],
            port=self.port,
            connect_timeout=3.0,
            control_connection_timeout=3.0,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        )
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local").one()
        finally:
            cluster.shutdown()
        return str(row.release_version) if row is not None else None
