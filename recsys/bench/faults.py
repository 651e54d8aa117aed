"""``recsys bench faults``: faults injected into real services under a stream, with what
each cost: events sent, accepted, applied, lost, duplicated, the longest answer and the
time to recover.

``kafka-broker``: a Kafka broker of the benchmark's own (the project's launcher, free ports,
a folder under the results) takes a stream of events through ``POST /v1/events`` (the
events API in-process, as the online API serves it). It is stopped mid-stream and started
again on its data. Every event answered 202 must reach the user state exactly once through
a nearline worker; every event sent while the broker is down must be answered 503. The test
suite runs the same scenario (``tests/integration/test_fault_kafka_broker.py``) and fails
on a lost or doubled event.

``redis``, ``cassandra`` and ``bundle`` run under the load of :mod:`recsys.bench.fault_load`:
``recsys online serve`` on the run's stores with impression logging on (as served), events
posted to it at a steady rate, recommendations read beside them and a nearline worker
applying the events.

- ``redis``: a redis-server of the run's own is stopped and started again empty;
  ``recsys nearline rebuild-state`` runs while the stream and the worker go on.
- ``cassandra``: a Cassandra node of the run's own (candidates and history) is stopped and
  started again on its data.
- ``bundle``: a bundle whose item vectors changed after it was written is promoted and the
  API told to reload.

Each reports the figures above and checks the state at the end against the one an unbroken
run writes from everything the log holds. ``tests/integration/test_fault_stores.py`` runs
the same three and fails on a lost or doubled event, a state that differs, or an answer
over budget.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import typer

from recsys.bench.results import finish, machine, results_dir
from recsys.console import err_console
from shared.events import Event, EventType
from shared.settings import Settings

FAULTS = ("kafka-broker", "redis", "cassandra", "bundle")
# With --replicas N: a node of a replicated cluster killed (kafka_node_loss, cassandra_node_loss).
REPLICATED_FAULTS = ("kafka-broker", "cassandra")
MAX_CASSANDRA_NODES = 3  # recsys.services.cluster's cap: Replication keeps 3 copies at most


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _event(i: int) -> Event:
    kind = (EventType.PLAY, EventType.CLICK, EventType.SKIP)[i % 3]
    return Event(
        event_id=f"fault-{i}",
        user_id=f"u{i % 9}",
        item_id=f"i{i % 40}",
        type=kind,
        timestamp=1_700_000_000.0 + i,
    )


def kafka_broker_restart(
    work: Path, cache_dir: Path, before: int = 300, during: int = 4, after: int = 300
) -> dict[str, Any]:
    """The scenario of the module docstring; returns its figures (see :func:`_tally`)."""
    from fastapi.testclient import TestClient

    from nearline.api import create_app
    from recsys.services.kafka import Kafka, KafkaConfig
    from recsys.services.manager import down_one, up_one
    from shared.storage.factory import open_event_log

    broker = Kafka(
        work / "services", cache_dir, KafkaConfig(port=_free_port(), controller_port=_free_port())
    )
    up_one(broker)
    answers: list[tuple[Event, int, float, str]] = []  # event, status, seconds, phase
    try:
        log = open_event_log(f"kafka://127.0.0.1:{broker.config.port}/fault-events")
        log.init_schema(partitions=2)
        with TestClient(create_app(log, Settings(home=work))) as client:

            def send(i: int, phase: str) -> int:
                event = _event(i)
                started = time.monotonic()
                reply = client.post("/v1/events", json=event.model_dump(mode="json"))
                status = int(reply.status_code)
                answers.append((event, status, time.monotonic() - started, phase))
                return status

            for i in range(before):
                send(i, "before")
            down_one(broker)
            for i in range(before, before + during):
                send(i, "down")
            up_one(broker)
            ready = time.monotonic()
            recovered: float | None = None
            i, taken = before + during, 0
            while taken < after and time.monotonic() < ready + 120:
                if send(i, "after") == 202:
                    taken += 1
                    recovered = recovered or time.monotonic() - ready
                else:
                    time.sleep(0.05)  # refused at once while the circuit is open
                i += 1
        accepted = [e for e, status, _, _ in answers if status == 202]
        counted = _apply(log, work, accepted)
    finally:
        down_one(broker, purge=True)
    return _tally(answers, accepted, counted, recovered)


def redis_restart(
    work: Path,
    cache_dir: Path,
    *,
    cassandra_url: str,
    kafka_url: str,
    rate: float = 1000.0,
    phase_s: float = 4.0,
) -> dict[str, Any]:
    """Redis stopped under the stream and started again empty (it keeps nothing on disk);
    ``recsys nearline rebuild-state`` runs while the stream, the worker and the API go on.
    The state at the end must equal the one an unbroken run writes from everything the log
    holds, and every answer meanwhile must be within the budget (degraded while Redis is
    down)."""
    from recsys.bench.fault_load import World
    from recsys.services.manager import down_one, up_one
    from recsys.services.redis_server import Redis, RedisConfig

    redis = Redis(work / "services", cache_dir, RedisConfig(port=_free_port()))
    up_one(redis)
    world = World.on(
        work,
        user_state_url=f"redis://127.0.0.1:{redis.port}/0?namespace=fault",
        cassandra_url=cassandra_url,
        kafka_url=kafka_url,
    )
    try:
        result, rebuild, _ = _restart_under_stream(
            world, redis, "user_state", rate, phase_s, after_restart=_rebuild_state
        )
        result["rebuild"] = rebuild
        return result
    finally:
        world.drop()
        down_one(redis, purge=True)


def cassandra_restart(
    work: Path,
    cache_dir: Path,
    *,
    redis_url: str,
    kafka_url: str,
    rate: float = 1000.0,
    phase_s: float = 4.0,
) -> dict[str, Any]:
    """Cassandra (the candidates and the history; a node of the run's own) stopped under
    the stream and started again on its data, while the API serves and the worker writes.
    No answer may go over the budget, every accepted event must be in the history once and
    in the state once, and the worker must resume on its own."""
    from recsys.bench.fault_load import World
    from recsys.services.cassandra import Cassandra, CassandraConfig
    from recsys.services.manager import down_one, up_one

    config = CassandraConfig(
        native_port=_free_port(), storage_port=_free_port(), jmx_port=_free_port(), heap_mb=768
    )
    cassandra = Cassandra(work / "services", cache_dir, config)
    # A node shares no cores with the API in production; on one machine its restart (a JVM
    # compiling its hot code) would starve the API under test of CPU, and an answer run late
    # for want of a core (seen once in CI: 1 of about 1,000) says nothing about the fault.
    cassandra.niceness = 10
    up_one(cassandra)
    world = World.on(
        work,
        user_state_url=f"{redis_url}?namespace=fault_{secrets.token_hex(3)}",
        cassandra_url=f"cassandra://127.0.0.1:{config.native_port}",
        kafka_url=kafka_url,
    )
    try:
        result, _, load = _restart_under_stream(world, cassandra, "candidates", rate, phase_s)
        result.update(_history_check(world, load))
        return result
    finally:
        world.drop()
        down_one(cassandra, purge=True)


def bundle_damaged(
    work: Path,
    *,
    cassandra_url: str,
    redis_url: str,
    kafka_url: str,
    rate: float = 1000.0,
    phase_s: float = 4.0,
) -> dict[str, Any]:
    """Under the stream, a new bundle is promoted whose item vectors changed after it was
    written (one flipped bit: it still loads, only its manifest's digest tells), and the API
    is told to reload. It must refuse it, keep serving the previous bundle without a failed
    or late answer, log the refusal and count it in ``/metrics``."""
    import httpx

    from recsys.bench.fault_load import ITEMS, Load, World
    from recsys.bench.online_data import synthetic_bundle
    from shared.registry import ModelRegistry

    world = World.on(
        work,
        user_state_url=f"{redis_url}?namespace=fault_{secrets.token_hex(3)}",
        cassandra_url=cassandra_url,
        kafka_url=kafka_url,
        admin=True,
    )
    token = world.env["RECSYS_ADMIN_TOKEN"]
    try:
        world.prepare()
        registry = ModelRegistry(world.settings.registry_url)
        live = registry.live()
        with world.api() as url, world.worker() as worker:
            load = Load(url, rate, api_pid=world.api_pid)
            load.start()
            try:
                time.sleep(phase_s)
                load.phase = "down"
                broken = synthetic_bundle(registry, ITEMS, 16, np.random.default_rng(3))
                target = registry.path(broken) / "embeddings" / "items.npy"
                data = bytearray(target.read_bytes())
                data[-5] ^= 0x01  # a float's low bit
                target.write_bytes(bytes(data))
                registry.promote(broken)
                reload = httpx.post(
                    f"{url}/v1/admin/reload",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=60,
                ).json()
                time.sleep(phase_s)
                load.phase = "after"
                registry.rollback()
                metrics = httpx.get(f"{url}/metrics", timeout=10).text
                time.sleep(1.0)
            finally:
                load.stop()
            caught_up = _caught_up(worker, load)
        result = _checked(world, load, None, caught_up)
        log = (work / "api.log").read_text(encoding="utf-8", errors="replace")
        served = {r.bundle for r in load.reads if r.bundle}
        result.update(
            bundle_refused=bool(
                reload.get("swapped") is False and broken in str(reload.get("error"))
            ),
            served_bundles=sorted(served),
            served_only_previous=served == {live.version if live else ""},
            counted="recsys_online_bundle_load_failures_total 1.0" in metrics,
            logged=broken in log,
        )
        return result
    finally:
        world.drop()


def _history_check(world: Any, load: Any) -> dict[str, Any]:
    """Every accepted event in the history once: the counts, and the first missing events
    (id, user, phase of the answer, seconds from the first post) to look for in the logs,
    each with where it is: in the worker's lake files (so the worker applied it), and in
    the history read at consistency ALL (so a replica holds the row a quorum read missed)."""
    accepted = [(e, a) for e, a in load.posted if a.status == 202]
    held = world.history_counts(sorted({e.user_id for e, _ in accepted}))
    missing = [(e, a) for e, a in accepted if e.event_id not in held]
    start = min((a.at - a.seconds for _, a in accepted), default=0.0)
    first = missing[:10]
    in_lake = _in_lake(world.settings.lake_dir, {e.event_id for e, _ in first})
    on_any_replica = world.history_ids_at_all({e.user_id for e, _ in first}) if first else set()
    return {
        "history_missing": len(missing),
        "history_doubled": sum(n > 1 for n in held.values()),
        "history_missing_events": [
            {
                "event_id": e.event_id,
                "user_id": e.user_id,
                "phase": a.phase,
                "answered_at_s": round(a.at - start, 2),
                "in_lake": e.event_id in in_lake,
                "read_at_all": e.event_id in on_any_replica,
            }
            for e, a in first
        ],
    }


def _in_lake(root: Path, event_ids: set[str]) -> set[str]:
    """Which of ``event_ids`` the lake files under ``root`` hold."""
    if not event_ids or not root.is_dir():
        return set()
    from nearline.lake import read_lake

    return event_ids.intersection(read_lake(root)["event_id"])


def _cluster_layout(kafka_nodes: int, cassandra_nodes: int) -> Any:
    """A cluster of the run's own: nodes on 127.0.0.2 and up, on ports free on all of them
    (so beside ``recsys services up --replicas N``'s, and beside the single-node services)."""
    from recsys.services.cluster import ClusterLayout, free_port

    hosts = [f"127.0.0.{2 + i}" for i in range(max(kafka_nodes, cassandra_nodes))]
    ports: set[int] = set()
    while len(ports) < 4:
        ports.add(free_port(hosts))
    kafka, controller, native, storage = sorted(ports)
    jmx = _free_run(cassandra_nodes)
    return ClusterLayout(
        kafka_nodes=kafka_nodes,
        cassandra_nodes=cassandra_nodes,
        kafka_port=kafka,
        controller_port=controller,
        native_port=native,
        storage_port=storage,
        jmx_first_port=jmx,
        cluster_name=f"fault-{secrets.token_hex(3)}",
        # The faults' single Cassandra node has 768 MB; three of them share 2 cores here.
        cassandra_heap_mb=768,
    )


def _free_run(n: int) -> int:
    """The first of ``n`` consecutive ports free on 127.0.0.1 (JMX, one per node)."""
    for _ in range(100):
        base = _free_port()
        try:
            held = []
            for port in range(base, base + n):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise RuntimeError(f"no {n} consecutive free ports")


def _start_all(services: list[Any]) -> None:
    from recsys.services.manager import up

    failed = [r for r in up(services) if isinstance(r, Exception)]
    if failed:
        raise failed[0]


def _stop_all(services: list[Any]) -> None:
    from recsys.services.manager import down

    down(services, purge=True)


def kafka_node_loss(
    work: Path,
    cache_dir: Path,
    *,
    redis_url: str,
    cassandra_url: str,
    nodes: int = 3,
    rate: float = 1000.0,
    phase_s: float = 4.0,
) -> dict[str, Any]:
    """A Kafka cluster of the run's own (``nodes`` KRaft nodes on 127.0.0.x, the project's
    replication: ``nodes`` copies, at most 3, ``min.insync.replicas`` one fewer) takes the
    stream; the broker that coordinates the worker's consumer group is killed with SIGKILL
    and restarted on its data (the worker must find a new coordinator and go on, and the
    API's producer the new leaders of the partitions that broker led). Every accepted
    event must be in the log, applied once, and the state must equal an unbroken run's.
    Recovery: from the restart until the broker is back in the in-sync replicas of every
    partition."""
    from recsys.bench.fault_load import World
    from recsys.services.cluster import kafka_nodes
    from recsys.services.manager import kill_one

    layout = _cluster_layout(nodes, 1)
    brokers = kafka_nodes(work / "cluster", cache_dir, layout)
    _start_all(list(brokers))
    world = World.on(
        work,
        user_state_url=f"{redis_url}?namespace=fault_{secrets.token_hex(3)}",
        cassandra_url=cassandra_url,
        kafka_url=layout.kafka_url,
    )
    topic = world.settings.event_log_url.rsplit("/", 1)[1]
    try:
        victim: dict[str, Any] = {}
        coordinator = partial(_coordinator, brokers, world, topic, victim)
        in_sync = partial(_all_in_sync, brokers, topic)
        result, _, _ = _restart_under_stream(
            world, coordinator, in_sync, rate, phase_s, stop=kill_one
        )
        result["nodes"] = nodes
        result.update(victim)
        return result
    finally:
        world.drop()
        _stop_all(list(brokers))


def _coordinator(brokers: list[Any], world: Any, topic: str, victim: dict[str, Any]) -> Any:
    """The broker coordinating the world's worker group: the leader of the partition of
    ``__consumer_offsets`` that Kafka maps the group id to (the absolute value of Java's
    ``String.hashCode`` modulo the topic's partitions). Notes in ``victim`` how many of
    ``topic``'s partitions it leads."""
    group = world.worker_group
    assert group is not None, "the worker is not running"
    # Kafka creates ``__consumer_offsets`` when the first group joins: on a loaded machine
    # the worker may not have joined within the first phase.
    deadline = time.monotonic() + 60.0
    while not (offsets := _partitions(brokers, "__consumer_offsets")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"group {group}: no __consumer_offsets topic within 60 s")
        time.sleep(0.2)
    h = _java_hash(group)
    wanted = (0 if h == -(1 << 31) else abs(h)) % len(offsets)  # Kafka's Utils.abs
    node_id = next(p["leader_id"] for p in offsets if p["partition_index"] == wanted)
    led = Counter(p["leader_id"] for p in _partitions(brokers, topic))
    victim.update(stopped_coordinated_group=True, stopped_led_partitions=led[node_id])
    return next(b for b in brokers if b.config.node_id == node_id)


def _java_hash(text: str) -> int:
    """Java's ``String.hashCode``: 32-bit and signed, over UTF-16 code units."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def _partitions(brokers: list[Any], topic: str) -> list[dict[str, Any]]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=[b.address for b in brokers], request_timeout_ms=5000
    )
    try:
        return list(admin.describe_topics([topic])[0]["partitions"])
    finally:
        admin.close()


def _all_in_sync(
    brokers: list[Any], topic: str, since: float, timeout_s: float = 120.0
) -> float | None:
    """Seconds from ``since`` until every partition of ``topic`` has all its replicas in
    sync again (None within ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            parts = _partitions(brokers, topic)
        except Exception:  # a broker still starting: ask again
            parts = []
        if parts and all(len(p["isr_nodes"]) == len(p["replica_nodes"]) for p in parts):
            return time.monotonic() - since
        time.sleep(0.1)
    return None


def cassandra_node_loss(
    work: Path,
    cache_dir: Path,
    *,
    redis_url: str,
    kafka_url: str,
    nodes: int = 3,
    rate: float = 1000.0,
    phase_s: float = 4.0,
) -> dict[str, Any]:
    """A Cassandra cluster of the run's own (``nodes`` nodes on 127.0.0.x; keyspace
    replication and consistency levels from :class:`shared.settings.Replication`) holds
    the candidates and the history; its first node (the driver's first contact) is killed
    with SIGKILL under the stream and restarted on its data. No answer may go over the
    budget, every accepted event must be in the history once and in the state once."""
    from recsys.bench.fault_load import World
    from recsys.services.cluster import cassandra_nodes
    from recsys.services.manager import kill_one

    layout = _cluster_layout(1, nodes)
    members = cassandra_nodes(work / "cluster", cache_dir, layout)
    # As in `cassandra`: the restarted JVM compiling its hot code would starve the API under
    # test of the two cores; in production it has cores of its own.
    for member in members:
        member.niceness = 10
    _start_all(list(members))
    world = World.on(
        work,
        user_state_url=f"{redis_url}?namespace=fault_{secrets.token_hex(3)}",
        cassandra_url=layout.cassandra_url,
        kafka_url=kafka_url,
    )
    try:
        result, _, load = _restart_under_stream(
            world, members[0], "candidates", rate, phase_s, stop=kill_one
        )
        result.update(_history_check(world, load))
        result["nodes"] = nodes
        return result
    finally:
        world.drop()
        _stop_all(list(members))


def _restart_under_stream(  # noqa: PLR0917 (the scenario's parts)
    world: Any,
    service: Any,
    store: str | Callable[[float], float | None],
    rate: float,
    phase_s: float,
    after_restart: Callable[[Any], Any] | None = None,
    stop: Callable[[Any], Any] | None = None,
) -> tuple[dict[str, Any], Any, Any]:
    """The scenario the store faults share: the world's API and worker under the load,
    ``service`` stopped (``stop``, default :func:`~recsys.services.manager.down_one`) and
    started again, ``after_restart(world)`` run as soon as it answers (the rebuild), then
    the checks of :func:`_checked` with the time it was down and the time the worker took
    to commit again. ``service`` may be a function of nothing that picks the service once
    the world is prepared (a node of a cluster). Recovery is the time to the first answer
    that no longer names ``store`` among its failures, or what ``store(restarted)``
    returns. Returns the figures, what ``after_restart`` returned and the load."""
    from recsys.bench.fault_load import Load, recovered_after, resumed_after
    from recsys.services.manager import down_one, up_one

    world.prepare()
    extra = None
    with world.api() as url, world.worker() as worker:
        load = Load(url, rate, api_pid=world.api_pid)
        load.start()
        try:
            time.sleep(phase_s)
            target = service() if callable(service) else service
            load.phase = "down"
            stopped = time.monotonic()
            (stop or down_one)(target)
            time.sleep(phase_s)
            up_one(target)
            restarted = time.monotonic()
            load.phase = "after"
            resumed = resumed_after(worker, restarted)
            recovered = (
                recovered_after(load, restarted, store)
                if isinstance(store, str)
                else store(restarted)
            )
            if after_restart is not None:
                extra = after_restart(world)
            time.sleep(phase_s)
        finally:
            load.stop()
        caught_up = _caught_up(worker, load)
    result = _checked(world, load, recovered, caught_up)
    result["stopped"] = target.address
    result["down_s"] = round(restarted - stopped, 2)
    result["worker_resumed_s"] = None if resumed is None else round(resumed, 2)
    return result, extra, load


def _rebuild_state(world: Any) -> dict[str, Any]:
    """``recsys nearline rebuild-state`` on the world's stores, as an operator runs it."""
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("recsys")), "nearline", "rebuild-state", "--json"],
        env={**os.environ, **world.env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"rebuild-state failed: {done.stderr.strip()[-2000:]}")
    figures = orjson.loads(done.stdout)
    return {**figures, "wall_s": round(time.monotonic() - started, 2)}


def _caught_up(worker: Any, load: Any) -> bool:
    from recsys.bench.fault_load import wait_applied

    return wait_applied(worker, len(load.accepted()))


def _checked(world: Any, load: Any, recovered: float | None, caught_up: bool) -> dict[str, Any]:
    """The figures of :func:`recsys.bench.fault_load.figures`, the state against an
    unbroken run's, and whether the worker caught up."""
    from recsys.bench.fault_load import figures, same_state

    accepted = load.accepted()
    logged = world.logged()
    users = sorted({e.user_id for e in logged})
    state = world.state_of(users)
    posted_types = {e.type.value for e in accepted}
    counted: Counter[tuple[str, str]] = Counter(
        {(u, t): n for u, s in state.items() for t, n in s.counters.items() if t in posted_types}
    )
    logged_ids = {e.event_id for e in logged}
    result = figures(load, counted, world.settings.budget_ms, recovered, logged_ids)
    result["worker_caught_up"] = caught_up
    result["accepted_not_in_log"] = len({e.event_id for e in accepted} - logged_ids)
    # Records the log holds twice (a producer's retry of a write that had landed): the
    # worker's dedupe on event_id keeps them from counting twice.
    result["doubled_in_log"] = world.doubled_in_log
    result["users_differing_from_unbroken_run"] = len(same_state(state, world.unbroken(logged)))
    return result


def _apply(log: Any, work: Path, accepted: list[Event]) -> Counter[tuple[str, str]]:
    """Run a nearline worker over the topic into fresh embedded state; the per-(user, type)
    counts it holds once every accepted event is in (or a minute has passed)."""
    from nearline.lake import LakeWriter
    from nearline.worker import Worker, WorkerConfig
    from shared.storage.factory import open_history, open_user_state

    state = open_user_state("memory://fault-state", ttl_s=3600, recent_cap=50)
    history = open_history("memory://fault-history")
    worker = Worker(
        log,
        state,
        history,
        LakeWriter(work / "lake", log.topic),
        config=WorkerConfig(group_id="fault-check"),
    )
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + 60
    while worker.stats.applied < len(accepted) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # anything more (a doubled event) arrives now or never
    stop.set()
    runner.join(30)
    try:
        users = sorted({e.user_id for e in accepted})
        return Counter(
            {(u, t): n for u, s in state.get_many(users).items() for t, n in s.counters.items()}
        )
    finally:
        for store in (log, state, history):
            store.close()


def _tally(
    answers: list[tuple[Event, int, float, str]],
    accepted: list[Event],
    counted: Counter[tuple[str, str]],
    recovered: float | None,
) -> dict[str, Any]:
    expected = Counter((e.user_id, e.type.value) for e in accepted)
    down = [status for _, status, _, phase in answers if phase == "down"]
    return {
        "sent": len(answers),
        "accepted": len(accepted),
        "refused": sum(status != 202 for _, status, _, _ in answers),
        "applied": sum(min(counted[k], n) for k, n in expected.items()),
        "lost": sum(max(0, n - counted[k]) for k, n in expected.items()),
        "duplicated": sum(max(0, counted[k] - expected[k]) for k in counted),
        "accepted_while_down": sum(status == 202 for status in down),
        "answers_while_down": dict(Counter(str(s) for s in down)),
        "longest_answer_ms": round(1000 * max(s for _, _, s, _ in answers), 1),
        "slow_refusals_while_down": sum(
            st != 202 and s > 1.0 for _, st, s, phase in answers if phase == "down"
        ),
        "longest_refusal_ms": round(
            1000 * max((s for _, st, s, _ in answers if st != 202), default=0.0), 1
        ),
        "recover_s": None if recovered is None else round(recovered, 2),
    }


def command(
    *,
    only: Annotated[
        str | None, typer.Option(help=f"One fault: {', '.join(FAULTS)} (default: all).")
    ] = None,
    rate: Annotated[float, typer.Option(help="Events per second the stream asks for.")] = 1000.0,
    phase_s: Annotated[
        float, typer.Option(help="Seconds of stream before the fault, while down, and after.")
    ] = 4.0,
    redis_url: Annotated[str, typer.Option(help="Redis.")] = "redis://127.0.0.1:6379/0",
    cassandra_url: Annotated[str, typer.Option(help="Cassandra.")] = "cassandra://127.0.0.1:9042",
    kafka_url: Annotated[str, typer.Option(help="Kafka (events).")] = "kafka://127.0.0.1:9092",
    replicas: Annotated[
        int,
        typer.Option(
            min=1,
            help="1: the faults above on single nodes. N >= 2: node loss in replicated"
            f" services: {', '.join(REPLICATED_FAULTS)} on a cluster of the run's own (N Kafka"
            " nodes, or N Cassandra nodes, at most 3), one node killed with SIGKILL.",
        ),
    ] = 1,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Faults injected into real services under a stream: lost, doubled, longest answer.

    The store a fault stops is one of the run's own (a broker, a redis-server, a Cassandra
    node on free ports, or with --replicas a node of a cluster of its own); the others are
    the services at the URLs given, in a topic, keyspace and namespace of the run's own.
    """
    names = FAULTS if replicas == 1 else REPLICATED_FAULTS
    if only is not None and only not in names:
        raise typer.BadParameter(f"{only!r}: use one of {', '.join(names)}", param_hint="--only")
    settings = Settings()
    folder = results_dir(settings, "faults")
    replicated: dict[str, Callable[[Path], dict[str, Any]]] = {
        "kafka-broker": lambda work: kafka_node_loss(
            work, settings.cache_dir, redis_url=redis_url, cassandra_url=cassandra_url,
            nodes=replicas, rate=rate, phase_s=phase_s,
        ),
        "cassandra": lambda work: cassandra_node_loss(
            work, settings.cache_dir, redis_url=redis_url, kafka_url=kafka_url,
            nodes=min(replicas, MAX_CASSANDRA_NODES), rate=rate, phase_s=phase_s,
        ),
    }  # fmt: skip
    runs: dict[str, Callable[[Path], dict[str, Any]]] = {
        "kafka-broker": lambda work: kafka_broker_restart(work, settings.cache_dir),
        "redis": lambda work: redis_restart(
            work, settings.cache_dir, cassandra_url=cassandra_url, kafka_url=kafka_url,
            rate=rate, phase_s=phase_s,
        ),
        "cassandra": lambda work: cassandra_restart(
            work, settings.cache_dir, redis_url=redis_url, kafka_url=kafka_url,
            rate=rate, phase_s=phase_s,
        ),
        "bundle": lambda work: bundle_damaged(
            work, cassandra_url=cassandra_url, redis_url=redis_url, kafka_url=kafka_url,
            rate=rate, phase_s=phase_s,
        ),
    }  # fmt: skip
    if replicas > 1:
        runs = replicated
    faults: dict[str, Any] = {}
    for name in names if only is None else (only,):
        err_console.print(f"fault: {name}", markup=False)
        faults[name] = runs[name](folder / name)
    figures = {
        "machine": machine(),
        "rate_asked_per_s": rate,
        "replicas": replicas,
        "faults": faults,
    }
    rows = [
        f"| {name} | {f['sent']} | {f.get('rate_per_s', '-')} | {f['accepted']} "
        f"| {f['refused']} ({f.get('refused_but_logged', '-')}) | {f['applied']} "
        f"| {f['lost']} | {f['duplicated']} | {f['longest_answer_ms']} "
        f"| {f.get('over_budget', '-')} | {f['recover_s']} |"
        for name, f in faults.items()
    ]
    markdown = "\n".join(
        [
            "# Faults" + (f" with {replicas} replicas (one node killed)" if replicas > 1 else ""),
            "",
            f"Stream asked for {rate:g} events/s; phases of {phase_s:g} s. Longest answer: as "
            "the client saw it (events and recommendations); over budget: recommendations "
            f"whose own time passed the budget ({settings.budget_ms:g} ms). A refused event "
            "the log holds all the same (the producer timed out on an acknowledgement) is "
            "applied once: the 503 asks for a retry, and the retry's event id is deduped.",
            "",
            "| fault | sent | events/s | accepted | refused (of them logged) | applied | lost "
            "| duplicated | longest answer (ms) | over budget | recovered in (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    finish(folder, figures, markdown, json)
