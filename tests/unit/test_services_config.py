"""Pure parts of `recsys services`: config rendering, argv, cluster ids, pid files, jar cache."""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from recsys.services import jvm, manager, proc
from recsys.services.base import ServiceError, State, Status
from recsys.services.cassandra import (
    CassandraConfig,
    CassandraDirs,
    render_cassandra_yaml,
)
from recsys.services.cassandra import server_argv as cassandra_argv
from recsys.services.kafka import (
    KafkaConfig,
    format_argv,
    is_formatted,
    new_cluster_id,
    render_server_properties,
)
from recsys.services.kafka import server_argv as kafka_argv
from recsys.services.prometheus import (
    Prometheus,
    PrometheusConfig,
    prometheus_argv,
    render_config,
    targets_file,
)
from recsys.services.redis_server import RedisConfig, redis_argv
from shared.settings import Settings


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and line[0] != "#")
    return {k.strip(): v.strip() for k, v in pairs}


# --- Kafka -------------------------------------------------------------------------------


def test_cluster_id_is_16_random_bytes_base64url_unpadded() -> None:
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cid in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid)
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_cluster_id_never_begins_with_a_dash_nor_is_reserved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kafka's StorageTool read an id like ``-CX46z7Fd-2I-pLxlYJa7A`` as an option (one
    fresh start in 64 failed); such draws, and Kafka's two reserved ids, are drawn again."""
    dash = b"\xf8" + bytes(range(1, 16))  # base64url of 0xF8... begins with "-"
    draws = iter([dash, bytes(16), bytes(15) + b"\x01", b"\x07" * 16])
    monkeypatch.setattr("recsys.services.kafka.secrets.token_bytes", lambda n: next(draws))
    assert base64.urlsafe_b64encode(dash).startswith(b"-")
    assert new_cluster_id() == base64.urlsafe_b64encode(b"\x07" * 16).rstrip(b"=").decode()


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    cfg = KafkaConfig(port=19092, controller_port=19093)
    props = parse_properties(render_server_properties(cfg, tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in props  # --standalone formatting excludes it
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["num.partitions"] == "4"
    assert props["auto.create.topics.enable"] == "true"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
    ):
        assert props[key] == "1", key


def test_server_properties_escape_backslashes() -> None:
    text = render_server_properties(KafkaConfig(), Path("/odd\\dir"))
    assert "log.dirs=/odd\\\\dir" in text


def test_kafka_argv_heap_main_class_and_format(tmp_path: Path) -> None:
    jars = tmp_path / "jars"
    argv = kafka_argv("/usr/bin/java", KafkaConfig(), tmp_path, jars)
    assert argv[0] == "/usr/bin/java"
    assert {"-Xms128m", "-Xmx512m"} <= set(argv)
    assert argv[argv.index("-cp") + 1] == f"{jars}/*"
    assert argv[-2:] == ["kafka.Kafka", str(tmp_path / "server.properties")]
    fmt = format_argv("/usr/bin/java", KafkaConfig(), tmp_path, jars, "abc")
    tail = fmt[fmt.index("kafka.tools.StorageTool") :]
    assert tail == [
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id=abc",
        f"--config={tmp_path / 'server.properties'}",
        "--standalone",
    ]


def test_is_formatted_looks_for_meta_properties(tmp_path: Path) -> None:
    assert not is_formatted(tmp_path)
    (tmp_path / "meta.properties").write_text("cluster.id=x\n")
    assert is_formatted(tmp_path)


# --- Cassandra ---------------------------------------------------------------------------


def test_cassandra_yaml_single_node(tmp_path: Path) -> None:
    home = tmp_path / "odd 'dir\" name"
    dirs = CassandraDirs(home)
    conf = yaml.safe_load(render_cassandra_yaml(CassandraConfig(), dirs))
    assert conf["auto_bootstrap"] is False
    assert conf["auto_snapshot"] is False
    assert conf["native_transport_port"] == 9042
    assert conf["listen_address"] == conf["rpc_address"] == "127.0.0.1"
    assert conf["partitioner"] == "org.apache.cassandra.dht.Murmur3Partitioner"
    assert conf["endpoint_snitch"] == "SimpleSnitch"
    assert conf["commitlog_sync"] == "periodic"
    assert conf["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:7000"
    assert conf["data_file_directories"] == [str(dirs.data)]
    assert conf["commitlog_directory"] == str(dirs.commitlog)
    assert conf["hints_directory"] == str(dirs.hints)
    assert conf["saved_caches_directory"] == str(dirs.saved_caches)
    assert all(Path(p).is_relative_to(home / "data") for p in map(str, dirs.writable()))
    assert conf["key_cache_size"] == "16MiB"


def test_cassandra_argv_java17_flags_jamm_and_conf_first(tmp_path: Path) -> None:
    jars = tmp_path / "jars"
    jars.mkdir()
    for name in ("jamm-0.4.0.jar", "cassandra-all-5.0.9.jar"):
        (jars / name).touch()
    dirs = CassandraDirs(tmp_path / "cassandra")
    argv = cassandra_argv("/usr/bin/java", CassandraConfig(), dirs, jars)
    assert argv[-1] == "org.apache.cassandra.service.CassandraDaemon"
    assert argv[argv.index("-cp") + 1] == f"{dirs.conf}:{jars}/*"
    assert f"-javaagent:{jars / 'jamm-0.4.0.jar'}" in argv
    assert {"-Xms256m", "-Xmx1024m"} <= set(argv)
    assert "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED" in argv
    assert "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED" in argv
    assert "-Djdk.attach.allowAttachSelf=true" in argv
    config = next(a for a in argv if a.startswith("-Dcassandra.config="))
    assert config == f"-Dcassandra.config=file://{dirs.conf}/cassandra.yaml"
    assert "-XX:+AlwaysPreTouch" not in argv


def test_find_jar_needs_a_version(tmp_path: Path) -> None:
    (tmp_path / "jamm-extras.jar").touch()
    with pytest.raises(ServiceError, match="jamm"):
        jvm.find_jar(tmp_path, "jamm")


# --- Redis -------------------------------------------------------------------------------


def test_redis_argv(tmp_path: Path) -> None:
    argv = redis_argv("/usr/bin/redis-server", RedisConfig(), tmp_path, "/state/redis/")
    opts = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert opts["--bind"] == "127.0.0.1"
    assert opts["--port"] == "6379"
    assert opts["--save"] == ""
    assert opts["--appendonly"] == "no"
    assert opts["--daemonize"] == "no"
    assert opts["--dir"] == str(tmp_path)
    # Redis rewrites its title; the marker must survive in it for `down` to know it as ours.
    assert opts["--proc-title-template"].endswith("/state/redis/")


# --- Versions and the jar cache ----------------------------------------------------------


def test_poms_pin_kafka_4_and_cassandra_5_0() -> None:
    assert jvm.pinned_version(jvm.pom_text("kafka"), "kafka.version").startswith("4.")
    assert jvm.pinned_version(jvm.pom_text("cassandra"), "cassandra.version").startswith("5.0.")
    for service in ("kafka", "cassandra"):
        pom = jvm.pom_text(service)
        assert re.search(r"<version>3\.8\.\d+</version>", pom), service
        assert "<includeScope>runtime</includeScope>" in pom


def test_pinned_version_missing_is_an_error() -> None:
    pom = '<project xmlns="http://maven.apache.org/POM/4.0.0"><properties/></project>'
    with pytest.raises(ServiceError, match=r"kafka\.version"):
        jvm.pinned_version(pom, "kafka.version")


def test_complete_jar_folder_skips_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = jvm.jar_dir(tmp_path, "kafka", "9.9.9")
    assert folder == tmp_path / "jars" / "kafka-9.9.9"
    folder.mkdir(parents=True)
    (folder / "x.jar").touch()
    # Incomplete (no stamp): Maven would be needed, and it is "missing".
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(ServiceError, match="mvn"):
        jvm.ensure_jars("kafka", "9.9.9", tmp_path, tmp_path / "kafka.log")
    (folder / jvm.COMPLETE_STAMP).touch()
    assert jvm.ensure_jars("kafka", "9.9.9", tmp_path, tmp_path / "kafka.log") == folder


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
    ],
)
def test_parse_java_major(output: str, major: int) -> None:
    assert jvm.parse_java_major(output) == major


# --- Pid files and processes -------------------------------------------------------------


def test_pid_file_round_trip_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "svc" / "svc.pid"
    assert proc.read_pid(path) is None
    proc.write_pid(path, 4242)
    assert proc.read_pid(path) == 4242
    for junk in ("", "abc", "-5", "0", "12 34"):
        path.write_text(junk)
        assert proc.read_pid(path) is None, junk
    proc.remove_pid(path)
    proc.remove_pid(path)  # idempotent
    assert not path.exists()


def test_spawned_session_is_recognised_and_stopped(tmp_path: Path) -> None:
    marker = str(tmp_path) + os.sep
    log = tmp_path / "svc.log"
    script = "echo started; trap 'exit 0' TERM; sleep 60 & wait"
    pid = proc.spawn_detached(["/bin/sh", "-c", script, marker], log, os.environ)
    try:
        assert proc.is_alive(pid)
        # /proc/<pid>/cmdline can still show the spawning process for a moment (seen once
        # in CI on a loaded machine): wait, boundedly, for the exec to show.
        deadline = time.monotonic() + 5
        while not proc.is_ours(pid, marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.is_ours(pid, marker), proc.cmdline(pid)
        assert not proc.is_ours(pid, "/somewhere/else/")
        assert os.getpgid(pid) == pid  # its own session and process group
        deadline = time.monotonic() + 5
        while "started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.log_tail(log) == "started"
    finally:
        assert proc.stop_session(pid, 5.0)
    assert not proc.is_alive(pid)
    assert not proc.group_alive(pid)  # the backgrounded sleep went with its group


def test_stop_session_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    marker = str(tmp_path) + os.sep
    script = "trap '' TERM; sleep 60 & wait"  # the sleep inherits the ignored TERM
    pid = proc.spawn_detached(["/bin/sh", "-c", script, marker], tmp_path / "x.log", os.environ)
    time.sleep(0.2)
    begin = time.monotonic()
    assert not proc.stop_session(pid, 0.5)  # False: it needed SIGKILL
    assert time.monotonic() - begin < 5
    assert not proc.is_alive(pid)
    assert not proc.group_alive(pid)


def test_is_alive_false_for_exited_child() -> None:
    pid = os.posix_spawn("/bin/true", ["/bin/true"], dict(os.environ))
    assert proc.wait_gone(pid, 5.0)
    assert not proc.is_alive(pid)
    assert proc.is_alive(os.getpid())
    assert not proc.is_ours(None, "/x/")


def test_log_tail_skips_blanks_and_missing(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert proc.log_tail(log) == "(no log)"
    log.write_text("a\n\nb\n  \nc\nd\n")
    assert proc.log_tail(log, lines=3) == "b | c | d"
    log.write_text(
        "ERROR Exiting Kafka\n"
        "org.apache.kafka.common.KafkaException: Socket server failed to bind\n"
        "\tat kafka.network.Acceptor.openServerSocket(SocketServer.scala:724)\n"
        "Caused by: java.net.BindException: Address already in use\n"
        "\tat java.base/sun.nio.ch.Net.bind0(Native Method)\n"
        "\t... 18 more\n"
    )
    assert proc.log_tail(log) == (
        "ERROR Exiting Kafka | org.apache.kafka.common.KafkaException: Socket server failed to "
        "bind | Caused by: java.net.BindException: Address already in use"
    )


def test_rotate_log_keeps_one_previous(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    proc.rotate_log(log)  # nothing to rotate yet
    log.write_text("first")
    proc.rotate_log(log)
    assert not log.exists()
    assert (tmp_path / "x.log.1").read_text() == "first"


# --- Manager plumbing --------------------------------------------------------------------


def test_make_services_order_dedupe_and_unknown(tmp_path: Path) -> None:
    names = [s.name for s in manager.make_services(["redis", "kafka", "redis"], tmp_path, tmp_path)]
    assert names == ["kafka", "redis"]
    every = manager.make_services(None, tmp_path, tmp_path)
    assert [s.name for s in every] == ["kafka", "cassandra", "redis"]
    assert every[0].home == tmp_path / "kafka"
    assert every[1].log_path == tmp_path / "cassandra" / "cassandra.log"
    with pytest.raises(ServiceError, match="zookeeper"):
        manager.make_services(["zookeeper"], tmp_path, tmp_path)


def test_prometheus_is_started_only_when_named_and_listed_while_ours_runs(
    tmp_path: Path,
) -> None:
    assert "prometheus" not in [s.name for s in manager.make_services(None, tmp_path, tmp_path)]
    named = manager.make_services(["prometheus", "redis"], tmp_path, tmp_path)
    assert [s.name for s in named] == ["redis", "prometheus"]
    ours = named[1]
    # A process whose command line names Prometheus' state folder, as the real one does.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", ours.marker])
    try:
        proc.write_pid(ours.pid_path, sleeper.pid)
        every = [s.name for s in manager.make_services(None, tmp_path, tmp_path)]
        assert every == ["kafka", "cassandra", "redis", "prometheus"]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert "prometheus" not in [s.name for s in manager.make_services(None, tmp_path, tmp_path)]


def test_status_usable_and_json_shape() -> None:
    st = Status("redis", "127.0.0.1:6379", State.EXTERNAL, None, "7.0.15")
    assert st.usable
    assert not Status("kafka", "127.0.0.1:9092", State.STOPPED).usable
    assert st.to_dict() == {
        "address": "127.0.0.1:6379",
        "state": "external",
        "pid": None,
        "version": "7.0.15",
        "detail": "",
    }


def test_importing_the_cli_has_no_side_effects(tmp_path: Path) -> None:
    # No driver imported, no folder made, until a command runs: checked in a fresh
    # interpreter, since this one may have imported the drivers already.
    code = (
        "import sys, recsys.services.cli, recsys.services.manager; "
        "print(sorted(m for m in ('kafka', 'cassandra', 'redis') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []


# --- Prometheus --------------------------------------------------------------------------


def test_prometheus_config_from_settings_never_takes_debians_port() -> None:
    cfg = PrometheusConfig.from_settings(
        Settings(scrape_nearline_targets=["127.0.0.1:9108", "127.0.0.1:9109"])
    )
    assert cfg.port == 9095
    assert cfg.api_targets == ("127.0.0.1:8000",)
    assert cfg.nearline_targets == ("127.0.0.1:9108", "127.0.0.1:9109")
    assert cfg.rules.is_file() and cfg.rules.parts[-3:] == ("deploy", "prometheus", "rules.yml")


def test_prometheus_config_scrapes_both_tiers_from_target_files(tmp_path: Path) -> None:
    cfg = PrometheusConfig(port=19095, interval_s=1.0, rules=Path("/odd dir/rules.yml"))
    conf = yaml.safe_load(render_config(cfg, tmp_path / "t: x"))
    assert conf["global"]["scrape_interval"] == conf["global"]["evaluation_interval"] == "1000ms"
    assert conf["rule_files"] == ["/odd dir/rules.yml"]
    jobs = {job["job_name"]: job for job in conf["scrape_configs"]}
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:19095"]}]
    assert jobs["recsys-online"]["file_sd_configs"] == [{"files": [f"{tmp_path}/t: x/online.json"]}]
    assert jobs["recsys-nearline"]["file_sd_configs"][0]["files"][0].endswith("nearline.json")
    assert json.loads(targets_file(("a:1", "b:2"))) == [{"targets": ["a:1", "b:2"]}]
    assert json.loads(targets_file(())) == []


def test_prometheus_argv_names_its_state_folder(tmp_path: Path) -> None:
    svc = Prometheus(tmp_path, tmp_path, PrometheusConfig(port=19095))
    argv = prometheus_argv("/usr/bin/prometheus", svc.config, svc.home, svc.data_dir)
    assert svc.marker in " ".join(argv)
    assert "--web.listen-address=127.0.0.1:19095" in argv
    assert f"--storage.tsdb.path={svc.data_dir}" in argv


def test_a_stranger_on_prometheus_port_is_reported(tmp_path: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        st = manager.inspect(Prometheus(tmp_path, tmp_path, PrometheusConfig(port=int(port))))
    finally:
        server.shutdown()
    assert st.state is State.UNHEALTHY
    assert "held by another program that does not answer Prometheus HTTP" in st.detail
