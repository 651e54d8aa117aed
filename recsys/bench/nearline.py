"""``recsys bench nearline``: worker throughput, freshness under load, fresh-candidate cost.

Against the real services by default (``--kafka-url``, ``--redis-url``, ``--cassandra-url``),
each run on a topic, Redis namespace and keyspace of its own (the keyspace is dropped after),
with a synthetic bundle of its own for session vectors and fresh candidates:

1. throughput: ``--events`` events produced first, then one in-process worker consumes them
   all (state, history and lake, checkpoints included); events per second from the first
   records the worker gets (joining the consumer group and the first fetch, paid once per
   start, are reported on their own, with the rate that counts them too) and the time per
   stage;
2. freshness: a ``recsys nearline run`` subprocess while this process produces at each rate
   of ``--rates`` for ``--settle-s`` (not measured) and then ``--seconds``; every 20 ms one
   probe event for a new user goes out with the load, and a reader polls Redis every 2 ms:
   freshness is from just before the probe's send to the first read that sees its state.
   The settling time keeps out what a worker pays once, in its first second under load
   (its first history appends, lake files and commit; 100-160 ms probes measured there),
   as the online benchmark keeps each step's start-up out. The load goes out through a
   producer of its own that does not wait for each tick's acknowledgements (``acks=all``
   and a final flush), so a slow acknowledgement delays no tick and the rate asked for is
   the rate produced;
3. fresh candidates: computed on request from the state (what the online tier does), p50
   and p99 over states read back from Redis, and what precomputing them in the worker would
   cost per batch of ``--poll-records`` events.

The run's topics are deleted at the end, like its keyspace: a broker that keeps thousands of
benchmark partitions starts slowly.

Figures are medians (and p50/p99 for latencies); nothing here asserts a timing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from recsys.bench.results import finish, machine, results_dir
from shared.settings import Settings

EVENT_TYPES = ("impression", "click", "play", "play", "rate", "add_to_list", "skip")


def command(
    *,
    events: Annotated[int, typer.Option(help="Events for the throughput run.")] = 20_000,
    rates: Annotated[
        str, typer.Option(help="Comma-separated produce rates (events/s).")
    ] = "1000,5000",
    # 20 s: 1,000 probes, so the p99 is the 10th-slowest probe rather than the 3rd of 250.
    seconds: Annotated[float, typer.Option(help="Seconds of load measured at each rate.")] = 20.0,
    settle_s: Annotated[
        float, typer.Option(help="Seconds of load at each rate before measuring.")
    ] = 2.0,
    users: Annotated[int, typer.Option(help="Distinct users in the synthetic stream.")] = 2_000,
    items: Annotated[int, typer.Option(help="Items in the synthetic bundle.")] = 5_000,
    dim: Annotated[int, typer.Option(help="Embedding dimension of the synthetic bundle.")] = 32,
    poll_records: Annotated[int, typer.Option(help="Worker batch size.")] = 1000,
    kafka_url: Annotated[str, typer.Option(help="Kafka bootstrap.")] = "kafka://127.0.0.1:9092",
    redis_url: Annotated[str, typer.Option(help="Redis.")] = "redis://127.0.0.1:6379/0",
    cassandra_url: Annotated[str, typer.Option(help="Cassandra.")] = "cassandra://127.0.0.1:9042",
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Nearline throughput per worker, freshness p50/p99 per rate, fresh-candidate latency."""
    settings = Settings()
    folder = results_dir(settings, "nearline")
    run = _Run(
        folder,
        kafka=kafka_url,
        redis_url=redis_url,
        cassandra=cassandra_url,
        items=items,
        dim=dim,
        users=users,
    )
    try:
        figures: dict[str, Any] = {
            "machine": machine(),
            "params": {
                "events": events,
                "rates": rates,
                "seconds": seconds,
                "settle_s": settle_s,
                "users": users,
                "items": items,
                "dim": dim,
                "poll_records": poll_records,
            },
        }
        figures["throughput"] = run.throughput(events, poll_records)
        figures["fresh_candidates"] = run.fresh_candidates(poll_records)
        figures["freshness"] = [
            run.freshness(float(rate), seconds, poll_records, settle_s)
            for rate in rates.split(",")
            if rate
        ]
    finally:
        run.close()
    figures["results_dir"] = str(folder)
    finish(folder, figures, _markdown(figures), json)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class _Run:
    """The stores, bundle and names one benchmark run uses."""

    def __init__(
        self,
        folder: Path,
        *,
        kafka: str,
        redis_url: str,
        cassandra: str,
        items: int,
        dim: int,
        users: int,
    ) -> None:
        from shared.bundle import ITEM_IDS, ITEM_VECTORS, Embeddings, write_embeddings
        from shared.registry import ModelRegistry
        from shared.storage.factory import open_history

        tag = secrets.token_hex(3)
        self.work = folder / "work"
        self.kafka = kafka.rstrip("/")
        self.redis_url = f"{redis_url}?namespace=bench_{tag}"
        self.keyspace = f"bench_nearline_{tag}"
        self.cassandra = f"{cassandra.rstrip('/')}/{self.keyspace}"
        self.tag = tag
        self.users = users
        rng = np.random.default_rng(42)
        vectors = rng.normal(size=(items, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        self.embeddings = Embeddings([f"i{i}" for i in range(items)], vectors)
        self.registry_url = f"file://{self.work}/models"
        registry = ModelRegistry(self.registry_url)
        with registry.create(None, "bench-nearline", {"items": items, "dim": dim}) as bundle:
            write_embeddings(bundle.path, ITEM_IDS, ITEM_VECTORS, self.embeddings)
        registry.promote(bundle.version)
        self.history = open_history(self.cassandra)
        self.history.init_schema()
        # Popularity skewed like real catalogues: a few items get most events.
        weights = 1.0 / np.arange(1, items + 1) ** 0.8
        self._item_p = weights / weights.sum()
        self._rng = rng

    def events(self, n: int, user_prefix: str = "u") -> list[Any]:
        from shared.events import Event

        now = time.time()
        users = self._rng.integers(0, self.users, n)
        picks = self._rng.choice(len(self._item_p), n, p=self._item_p)
        kinds = self._rng.integers(0, len(EVENT_TYPES), n)
        return [
            Event(
                user_id=f"{user_prefix}{u}",
                item_id=f"i{i}",
                type=EVENT_TYPES[k],
                value=4.0 if EVENT_TYPES[k] == "rate" else None,
                timestamp=now,
            )
            for u, i, k in zip(users.tolist(), picks.tolist(), kinds.tolist(), strict=True)
        ]

    def _log(self, topic: str) -> Any:
        from shared.storage.factory import open_event_log

        log = open_event_log(f"{self.kafka}/{topic}")
        log.init_schema(partitions=4)
        return log

    def _state(self) -> Any:
        from shared.storage.factory import open_user_state

        return open_user_state(self.redis_url, ttl_s=3600, recent_cap=50)

    def throughput(self, n: int, poll_records: int) -> dict[str, Any]:
        from nearline.embeddings import LiveItemVectors
        from nearline.lake import LakeWriter
        from nearline.worker import Worker, WorkerConfig
        from shared.heap import freeze_startup_heap
        from shared.registry import ModelRegistry

        topic = f"bench_nearline_{self.tag}_throughput"
        log, state = self._log(topic), self._state()
        try:
            stream = self.events(n)
            for start in range(0, n, 5000):
                log.append([(e.user_id, e.to_json()) for e in stream[start : start + 5000]])
            worker = Worker(
                log,
                state,
                self.history,
                LakeWriter(self.work / "lake", topic),
                vectors=LiveItemVectors(ModelRegistry(self.registry_url)),
                config=WorkerConfig(group_id=f"bench_{self.tag}", poll_records=poll_records),
            )
            freeze_startup_heap()  # as `recsys nearline run` does before it consumes
            started = time.perf_counter()
            stats = worker.run(max_records=n)
            ended = time.perf_counter()
            elapsed = ended - started
            # The rate is the worker's once it has records: joining the consumer group and
            # the first fetch are paid once per start, not per event (reported on their own).
            first = stats.first_records_at if stats.first_records_at is not None else started
            consuming = ended - first
        finally:
            log.close()
            state.close()
        per_10k = {
            k: round(v * 10_000 / max(stats.records, 1), 3) for k, v in stats.seconds.items()
        }
        return {
            "events": stats.records,
            "seconds": round(consuming, 3),
            "events_per_second": round(stats.records / consuming, 1),
            "group_join_seconds": round(first - started, 3),
            "events_per_second_with_group_join": round(stats.records / elapsed, 1),
            "applied": stats.applied,
            "batches": stats.batches,
            "commits": stats.commits,
            "stage_seconds_per_10k_events": per_10k,
            "note": "history runs in a background thread: its time overlaps the other stages",
        }

    def fresh_candidates(self, poll_records: int) -> dict[str, Any]:
        import faiss

        from shared.fresh import FreshCandidates
        from shared.index import build_index

        # One query of ~10 vectors: OpenMP threads only spin against each other (4x slower
        # on a busy 2-core machine); the request path should search single-threaded.
        faiss.omp_set_num_threads(1)

        state = self._state()
        try:
            states = [
                s
                for s in state.get_many([f"u{u}" for u in range(self.users)]).values()
                if s.recent_items
            ]
        finally:
            state.close()
        index = build_index(self.embeddings.vectors)
        fresh = FreshCandidates(self.embeddings, index)
        online: list[float] = []
        for s in states[:2000]:
            t = time.perf_counter()
            fresh(s, k=50)
            online.append((time.perf_counter() - t) * 1000)
        # Precomputing in the worker: one call per distinct user of each batch.
        batch_users = max(1, min(len(states), int(poll_records * 0.5)))  # ~distinct users per batch
        t = time.perf_counter()
        for s in states[:batch_users]:
            fresh(s, k=50)
        per_batch_ms = (time.perf_counter() - t) * 1000
        return {
            "states": len(states),
            "index": index.kind,
            "faiss_threads": 1,
            "online_ms_p50": round(_pct(online, 50), 3),
            "online_ms_p99": round(_pct(online, 99), 3),
            "precompute_ms_per_batch": round(per_batch_ms, 1),
            "precompute_users_per_batch": batch_users,
            "choice": "online: computed on request from the state",
        }

    def freshness(
        self, rate: float, seconds: float, poll_records: int, settle_s: float = 0.0
    ) -> dict[str, Any]:
        from shared.heap import freeze_startup_heap

        topic = f"bench_nearline_{self.tag}_r{int(rate)}"
        log, state = self._log(topic), self._state()
        env = {
            **os.environ,
            "RECSYS_HOME": str(self.work),
            "RECSYS_EVENT_LOG_URL": f"{self.kafka}/{topic}",
            "RECSYS_USER_STATE_URL": self.redis_url,
            "RECSYS_HISTORY_URL": self.cassandra,
            "RECSYS_CANDIDATES_URL": self.cassandra,
            "RECSYS_REGISTRY_URL": self.registry_url,
            "RECSYS_USER_STATE_TTL_S": "3600",
        }
        recsys = shutil.which("recsys", path=str(Path(sys.executable).parent)) or "recsys"
        worker = subprocess.Popen(
            [
                recsys,
                "nearline",
                "run",
                "--group",
                f"bench_{self.tag}_r{int(rate)}",
                "--poll-records",
                str(poll_records),
                "--log-level",
                "WARNING",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            self._warm_up(log, state, f"warm{int(rate)}")
            # This process times the probes: a full collection of its heap (the throughput
            # run's leftovers; 45-200 ms measured) would be counted as the worker's latency.
            freeze_startup_heap()
            return self._measure(log, state, rate, seconds, f"p{int(rate)}_", settle_s=settle_s)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()
            state.close()

    def _warm_up(self, log: Any, state: Any, user: str) -> None:
        from shared.events import Event

        log.append([(user, Event(user_id=user, item_id="i0", type="play").to_json())])
        deadline = time.monotonic() + 90
        while state.get(user) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark's worker did not start within 90 s")
            time.sleep(0.05)

    def _measure(
        self,
        log: Any,
        state: Any,
        rate: float,
        seconds: float,
        prefix: str,
        *,
        settle_s: float = 0.0,
    ) -> dict[str, Any]:
        """Produce at ``rate`` for ``settle_s`` then ``seconds``, a probe with every tick; only
        the probes of the last ``seconds`` are timed (the others go out all the same)."""
        from shared.events import Event

        tick = 0.02
        per_tick = max(1, round(rate * tick))
        settle_ticks, ticks = int(settle_s / tick), int(seconds / tick)
        total = settle_ticks + ticks
        payloads = [(e.user_id.encode(), e.to_json()) for e in self.events(per_tick * total)]
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        done = threading.Event()

        def reader() -> None:
            while not done.is_set() or len(seen) < len(sent):
                pending = [u for u in list(sent) if u not in seen]
                if pending:
                    found = state.get_many(pending)
                    now = time.perf_counter()
                    for u in found:
                        seen[u] = now
                if done.is_set() and time.perf_counter() - last_send[0] > 60:
                    return
                time.sleep(0.002)

        last_send = [time.perf_counter()]
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        producer = self._producer()
        try:
            started = measured_from = time.perf_counter()
            for n in range(total):
                if n == settle_ticks:
                    measured_from = time.perf_counter()
                probe = f"{prefix}{n}" if n >= settle_ticks else f"{prefix}settle{n}"
                for key, value in payloads[n * per_tick : (n + 1) * per_tick]:
                    producer.send(log.topic, key=key, value=value)
                probe_event = Event(user_id=probe, item_id="i1", type="play").to_json()
                if n >= settle_ticks:
                    sent[probe] = time.perf_counter()
                producer.send(log.topic, key=probe.encode(), value=probe_event)
                last_send[0] = time.perf_counter()
                delay = started + (n + 1) * tick - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            produced_for = time.perf_counter() - measured_from
            producer.flush(60)
        finally:
            producer.close(10)
        done.set()
        thread.join(180)
        latencies = [(seen[u] - sent[u]) * 1000 for u in sent if u in seen]
        return {
            "target_rate": rate,
            "settle_seconds": settle_s,
            "settle_probes": settle_ticks,  # sent with the settling load, not timed
            "achieved_rate": round(per_tick * ticks / produced_for, 1),
            "probes": len(sent),
            "probes_seen": len(latencies),
            "freshness_ms_p50": round(_pct(latencies, 50), 1),
            "freshness_ms_p99": round(_pct(latencies, 99), 1),
        }

    def _producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self.kafka.removeprefix("kafka://"), acks="all", linger_ms=2
        )

    def close(self) -> None:
        from kafka import KafkaAdminClient

        from shared.storage.cassandra.connection import connect, parse_cassandra_url

        self.history.close()
        admin = KafkaAdminClient(bootstrap_servers=self.kafka.removeprefix("kafka://"))
        try:
            mine = [t for t in admin.list_topics() if t.startswith(f"bench_nearline_{self.tag}")]
            if mine:
                admin.delete_topics(mine)
        finally:
            admin.close()
        cluster, session = connect("bench", self.cassandra, parse_cassandra_url(self.cassandra))
        try:
            session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}")
        finally:
            cluster.shutdown()


def _markdown(figures: dict[str, Any]) -> str:
    t = figures["throughput"]
    f = figures["fresh_candidates"]
    lines = [
        "# recsys bench nearline",
        "",
        f"Machine: {figures['machine']['cpus']} CPUs, {figures['machine']['platform']}",
        "",
        f"Throughput, one worker: **{t['events_per_second']:.0f} events/s** ({t['events']} events"
        f" in {t['seconds']:.1f} s from the first records, {t['batches']} batches,"
        f" {t['commits']} commits; {t['events_per_second_with_group_join']:.0f} events/s counting"
        f" the {t['group_join_seconds']:.2f} s the worker took to join its group and fetch).",
        f"Seconds per 10,000 events by stage: {t['stage_seconds_per_10k_events']}.",
        "",
        f"Freshness: {figures['params']['seconds']:g} s measured at each rate after"
        f" {figures['params']['settle_s']:g} s at that rate (not measured).",
        "",
        "| target rate | achieved | probes seen | freshness p50 | freshness p99 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in figures["freshness"]:
        lines.append(
            f"| {r['target_rate']:.0f}/s | {r['achieved_rate']:.0f}/s | {r['probes_seen']}/{r['probes']}"
            f" | {r['freshness_ms_p50']:.1f} ms | {r['freshness_ms_p99']:.1f} ms |"
        )
    lines += [
        "",
        f"Fresh candidates ({f['index']} index, k=50, 10 seeds) on request: p50"
        f" {f['online_ms_p50']:.2f} ms, p99 {f['online_ms_p99']:.2f} ms; precomputing them in the"
        f" worker would cost {f['precompute_ms_per_batch']:.0f} ms per batch"
        f" ({f['precompute_users_per_batch']} users).",
        "",
    ]
    return "\n".join(lines)
