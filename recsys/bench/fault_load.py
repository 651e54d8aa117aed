"""The load under which ``recsys bench faults`` stops a store: the online API as served (a
``recsys online serve`` process on the run's own stores), events posted to it at a steady
rate, recommendations read beside them, and a nearline worker applying the events, each
answer timed and tagged with the phase it fell in (``before``, ``down``, ``after``).

:class:`World` holds what a scenario needs and checks what it must: every accepted event
applied once (user state counters against the accepted events), the rebuilt or resumed state
equal to the one an unbroken run writes, and every answer's own time within the budget.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from shared.events import Event, EventType
from shared.settings import Settings

PHASES = ("before", "down", "after")
# The niceness of the load's own threads (posting, reading, the worker): the API, as on a
# machine of its own, is first in line for a core. On two shared cores the answers that
# went over budget under a fault had waited that long on the run queue, not in the API's
# code: each one's main thread spent 2-20 ms on a CPU and 40-380 ms runnable but not running.
LOAD_NICENESS = 10
USERS = 60  # users of the synthetic bundle, who post and read
ITEMS = 400


def runqueue_ns(pid: int | None) -> dict[str, int] | None:
    """Nanoseconds each thread of process ``pid`` has waited on a run queue so far (the
    second field of Linux's ``schedstat``), or None where it cannot be read."""
    if pid is None:
        return None
    waited: dict[str, int] = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            path = f"/proc/{pid}/task/{tid}/schedstat"
            with contextlib.suppress(OSError), open(path, encoding="ascii") as stat:
                waited[tid] = int(stat.read().split()[1])  # unless the thread just ended
    except (OSError, ValueError, IndexError):
        return None
    return waited or None


def longest_wait_ms(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    """The longest run-queue wait of one thread between two :func:`runqueue_ns` readings:
    the time the API lost for want of a core (its main thread's own wait, or that of the
    thread holding the GIL it waited for)."""
    if before is None or after is None:
        return None
    return max((n - before.get(tid, 0)) / 1e6 for tid, n in after.items())


def yield_the_cpu(niceness: int = LOAD_NICENESS) -> None:
    """Lower the calling thread's priority to ``niceness`` (Linux sets it per thread; a
    no-op where it cannot, and never raised, which would need privileges)."""
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)


@dataclass
class Answer:
    phase: str
    status: int
    seconds: float  # as the client saw it
    total_ms: float | None = None  # as the API timed itself (recommendations)
    degraded: bool = False
    failures: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)  # when the answer came
    bundle: str | None = None  # the bundle that answered (recommendations)
    timings_ms: dict[str, float] = field(default_factory=dict)  # the API's stage timings
    # ms one thread of the API spent runnable but not running while it was being asked
    # (the longest such run-queue wait, from /proc), or None where it cannot be read
    runqueue_ms: float | None = None


@dataclass
class Load:
    """Events posted at ``rate`` per second and recommendations read every ``read_every_s``
    from two threads, until :meth:`stop`."""

    url: str
    rate: float
    read_every_s: float = 0.02
    api_pid: int | None = None  # the API's process, whose run-queue wait each read records
    senders: int = 0  # threads posting; 0: one per 125 events/s asked, at most 8
    phase: str = "before"
    posted: list[tuple[Event, Answer]] = field(default_factory=list)
    reads: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _tag: str = field(default_factory=lambda: secrets.token_hex(3))
    _started: float = 0.0
    seconds: float = 0.0  # from start to stop

    def start(self) -> None:
        # A few reads first, not counted: a fresh API's first answers open its connections
        # (one took 91 ms of its own time here), which is start-up, not the fault.
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for i in range(10):
                client.get(f"/v1/users/u{i % 3}/recommendations?k=10")
        self.senders = self.senders or max(1, min(8, math.ceil(self.rate / 125)))
        self._started = time.monotonic()
        self._threads = [
            *(
                threading.Thread(target=self._post, args=(n,), name=f"fault-post-{n}", daemon=True)
                for n in range(self.senders)
            ),
            threading.Thread(target=self._read, name="fault-read", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        self.seconds = time.monotonic() - self._started

    def accepted(self) -> list[Event]:
        return [event for event, answer in self.posted if answer.status == 202]

    def _post(self, sender: int) -> None:
        """Sender ``sender`` posts every ``senders``-th event of the stream, on time: an
        answer that takes long holds back only its own sender."""
        yield_the_cpu()
        kinds = (EventType.PLAY, EventType.CLICK, EventType.PLAY, EventType.SKIP)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = sender
            started = self._started
            while not self._stop.is_set():
                due = started + i / self.rate
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                event = Event(
                    event_id=f"fault-{self._tag}-{i}",
                    user_id=f"u{i % USERS}",
                    item_id=f"i{(i * 7) % ITEMS}",
                    type=kinds[i % len(kinds)],
                    timestamp=time.time(),
                )
                phase, t0 = self.phase, time.perf_counter()
                try:
                    status = client.post("/v1/events", json=event.model_dump(mode="json"))
                    code = status.status_code
                except httpx.HTTPError:
                    code = 0  # no answer at all: counted as refused, never as accepted
                self.posted.append((event, Answer(phase, code, time.perf_counter() - t0)))
                i += self.senders

    def _read(self) -> None:
        yield_the_cpu()  # the answers are timed by the API's own clock, not this thread's
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                phase, t0 = self.phase, time.perf_counter()
                waited = runqueue_ns(self.api_pid)
                try:
                    reply = client.get(f"/v1/users/u{i % USERS}/recommendations?k=10")
                    seconds = time.perf_counter() - t0
                    answer = Answer(phase, reply.status_code, seconds)
                    answer.runqueue_ms = longest_wait_ms(waited, runqueue_ns(self.api_pid))
                    if reply.status_code == 200:
                        body = reply.json()
                        answer.timings_ms = dict(body["timings_ms"])
                        answer.total_ms = float(answer.timings_ms["total"])
                        answer.degraded = bool(body["degraded"])
                        answer.failures = dict(body["failures"])
                        answer.bundle = body.get("bundle")
                except httpx.HTTPError:
                    answer = Answer(phase, 0, time.perf_counter() - t0)
                self.reads.append(answer)
                i += 1
                self._stop.wait(self.read_every_s)


@dataclass
class World:
    """The stores of one scenario (URLs), its bundle and the API and worker running on them."""

    work: Path
    settings: Settings
    env: dict[str, str]
    api_pid: int | None = None  # while :meth:`api` runs
    worker_group: str | None = None  # the consumer group of :meth:`worker`'s worker
    doubled_in_log: int = 0  # records :meth:`logged` found with an event id seen before

    @classmethod
    def on(
        cls,
        work: Path,
        *,
        user_state_url: str,
        cassandra_url: str,
        kafka_url: str,
        admin: bool = False,
    ) -> World:
        """A world on these stores (a keyspace and topic of its own); with ``admin``, an
        admin token of its own for ``POST /v1/admin/reload`` (``settings.admin_token``)."""
        tag = secrets.token_hex(3)
        keyspace = f"{cassandra_url.rstrip('/')}/fault_{tag}"
        env = {
            "RECSYS_HOME": str(work),
            "RECSYS_REGISTRY_URL": f"file://{work}/models",
            "RECSYS_USER_STATE_URL": user_state_url,
            "RECSYS_CANDIDATES_URL": keyspace,
            "RECSYS_HISTORY_URL": keyspace,
            "RECSYS_EVENT_LOG_URL": f"{kafka_url.rstrip('/')}/fault_events_{tag}",
            "RECSYS_LOG_IMPRESSIONS": "true",  # as served
            "RECSYS_DEVICE": "cpu",
        }
        settings = Settings(
            home=work,
            registry_url=env["RECSYS_REGISTRY_URL"],
            user_state_url=user_state_url,
            candidates_url=keyspace,
            history_url=keyspace,
            event_log_url=env["RECSYS_EVENT_LOG_URL"],
            log_impressions=True,
            device="cpu",
        )
        if admin:
            token = secrets.token_urlsafe(16)
            env["RECSYS_ADMIN_TOKEN"] = token
            settings = settings.model_copy(update={"admin_token": SecretStr(token)})
        return cls(work, settings, env)

    def prepare(self) -> None:
        """The synthetic bundle and its candidates (state comes only from the events), the
        topic and the history's tables."""
        from recsys.bench.online_data import prepare
        from shared.storage.factory import open_event_log, open_history

        self.work.mkdir(parents=True, exist_ok=True)
        no_state = {**self.env, "RECSYS_USER_STATE_URL": "memory://fault-seed"}
        prepare(
            no_state, users=USERS, items=ITEMS, dim=16, per_user=60,
            population=self.work / "population.json",
        )  # fmt: skip
        for store in (
            open_event_log(self.settings.event_log_url),
            open_history(self.settings.history_url),
        ):
            try:
                store.init_schema()
            finally:
                store.close()

    @contextlib.contextmanager
    def api(self) -> Iterator[str]:
        """``recsys online serve`` on the world's stores; its address."""
        from recsys.bench.online import _server

        def argv(port: int) -> list[str]:
            return [str(Path(sys.executable).with_name("recsys")), "online", "serve", "--port", str(port),
                    "--log-level", "warning"]  # fmt: skip

        with _server("api", argv, self.env, self.work, "/readyz") as (url, pid):
            self.api_pid = pid
            try:
                yield url
            finally:
                self.api_pid = None

    @contextlib.contextmanager
    def worker(self) -> Iterator[Any]:
        """A nearline worker of the world's own group, running in a thread."""
        from nearline.metrics import NearlineMetrics
        from nearline.worker import WorkerConfig
        from recsys.nearline_cli import opened_worker

        config = WorkerConfig(group_id=f"fault-{secrets.token_hex(3)}")
        self.worker_group = config.group_id
        stop = threading.Event()
        with opened_worker(self.settings, config, NearlineMetrics()) as worker:

            def run() -> None:
                yield_the_cpu()  # and the threads the worker starts, which inherit it
                worker.run(stop)

            runner = threading.Thread(target=run, name="fault-worker")
            runner.start()
            try:
                yield worker
            finally:
                stop.set()
                runner.join(120)

    def state_of(self, users: list[str]) -> dict[str, Any]:
        from shared.storage.factory import open_user_state

        state = open_user_state(self.settings.user_state_url, 3600, self.settings.recent_items_cap)
        try:
            return state.get_many(users)
        finally:
            state.close()

    def logged(self) -> list[Event]:
        """Every event the topic holds (posted and impressions), read by a group of its own."""
        from shared.storage.factory import open_event_log

        log = open_event_log(self.settings.event_log_url)
        consumer = log.consumer(f"fault-read-{secrets.token_hex(3)}")
        found: dict[str, Event] = {}
        self.doubled_in_log = 0
        try:
            quiet = 0
            while quiet < 3:
                records = consumer.poll(5000, 1.0)
                quiet = 0 if records else quiet + 1
                for record in records:
                    event = Event.from_json(record.value)
                    self.doubled_in_log += event.event_id in found
                    found[event.event_id] = event
        finally:
            consumer.close()
            log.close()
        return list(found.values())

    def unbroken(self, events: list[Event]) -> dict[str, Any]:
        """The state an unbroken run writes from ``events``: the worker's fold, in time
        order, into an embedded store."""
        from nearline.embeddings import LiveItemVectors
        from nearline.worker import WorkerConfig, state_events
        from shared.registry import ModelRegistry
        from shared.storage.factory import open_user_state

        vectors = LiveItemVectors(ModelRegistry(self.settings.registry_url)).current()
        state = open_user_state("memory://fault-unbroken", 3600, self.settings.recent_items_cap)
        try:
            ordered = sorted(events, key=lambda e: (e.timestamp, e.event_id))
            for start in range(0, len(ordered), 5000):
                state.apply_events(
                    state_events(ordered[start : start + 5000], vectors),
                    WorkerConfig().half_life_s,
                )
            return state.get_many(sorted({e.user_id for e in events}))
        finally:
            state.close()

    def history_counts(self, users: list[str]) -> Counter[str]:
        """How many times each event id is in the history (the history of ``users``)."""
        from shared.storage.factory import open_history

        history = open_history(self.settings.history_url)
        try:
            return Counter(e.event_id for u in users for e in history.for_user(u, limit=100_000))
        finally:
            history.close()

    def history_ids_at_all(self, users: set[str]) -> set[str]:
        """The event ids of ``users`` that a read at consistency ALL finds in a Cassandra
        history (a row any replica holds comes back); empty for another store. Run it after
        the quorum reads: it repairs what it reads."""
        if not self.settings.history_url.startswith("cassandra://"):
            return set()
        from shared.storage.cassandra.history import CassandraEventHistoryStore

        history = CassandraEventHistoryStore(self.settings.history_url)
        try:
            return {i for u in users for i in history.event_ids_at_all(u)}
        finally:
            history.close()

    def drop(self) -> None:
        from recsys.bench.online import _drop

        _drop(
            self.settings.candidates_url.rsplit("/", 1)[0],
            self.settings.candidates_url.rsplit("/", 1)[1],
            self.settings.event_log_url.rsplit("/", 1)[0],
            self.settings.event_log_url.rsplit("/", 1)[1],
        )


def wait_applied(worker: Any, n: int, timeout_s: float = 120.0) -> bool:
    """Until the worker has read at least ``n`` records and nothing more for two seconds;
    False if ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        records = int(worker.stats.records)
        if records != seen:
            seen, since = records, time.monotonic()
        elif records >= n and time.monotonic() - since >= 2.0:
            return True
        time.sleep(0.1)
    return False


def same_state(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Users whose state differs (counters, recent items, last active, session vector)."""
    import numpy as np

    differ = sorted(set(got) ^ set(want))
    for user in sorted(set(got) & set(want)):
        a, b = got[user], want[user]
        if (
            (a.counters, a.recent_items, a.last_active)
            != (
                b.counters,
                b.recent_items,
                b.last_active,
            )
            or (a.session_vector is None) != (b.session_vector is None)
            or (
                a.session_vector is not None
                and not np.allclose(a.session_vector, b.session_vector, rtol=1e-4, atol=1e-5)
            )
        ):
            differ.append(user)
    return differ


def figures(
    load: Load,
    counted: Counter[tuple[str, str]],
    budget_ms: float,
    recovered: float | None,
    logged_ids: set[str] | None = None,
) -> dict[str, Any]:
    """What ``recsys bench faults`` reports per fault.

    With ``logged_ids`` (the event ids the log holds), a refused event that the log holds
    all the same counts as one to apply once: a producer that timed out waiting for the
    brokers' acknowledgement (a leader moving) answers 503, yet its write may have landed.
    The 503 tells the client to retry; a retry carries the same event id, which the
    worker's dedupe counts once. Such events are reported as ``refused_but_logged``.
    """
    accepted = load.accepted()
    landed = [e for e, a in load.posted if a.status != 202 and e.event_id in (logged_ids or set())]
    expected = Counter((e.user_id, e.type.value) for e in [*accepted, *landed])
    down = [a for _, a in load.posted if a.phase == "down"]
    reads = [r for r in load.reads if r.status == 200]
    seconds = max(
        [a.seconds for _, a in load.posted] + [r.seconds for r in load.reads], default=0.0
    )
    return {
        "sent": len(load.posted),
        "accepted": len(accepted),
        "refused": sum(a.status != 202 for _, a in load.posted),
        "refused_but_logged": len(landed),
        "accepted_by_phase": {
            phase: sum(a.status == 202 and a.phase == phase for _, a in load.posted)
            for phase in PHASES
        },
        "applied": sum(min(counted[k], n) for k, n in expected.items()),
        "lost": sum(max(0, n - counted[k]) for k, n in expected.items()),
        "duplicated": sum(max(0, counted[k] - expected[k]) for k in counted),
        "accepted_while_down": sum(a.status == 202 for a in down),
        "reads": len(load.reads),
        "reads_failed": sum(r.status != 200 for r in load.reads),
        "reads_degraded_while_down": sum(r.degraded for r in reads if r.phase == "down"),
        "reads_while_down": sum(r.phase == "down" for r in reads),
        "longest_answer_ms": round(1000 * seconds, 1),
        "longest_answer_own_ms": {
            phase: round(
                max((r.total_ms or 0.0 for r in reads if r.phase == phase), default=0.0), 1
            )
            for phase in PHASES
        },
        "over_budget": sum((r.total_ms or 0.0) > budget_ms for r in reads),
        # Over budget even without the time the API waited for a core: late for something
        # the API did or waited on, not for the machine being busy (None where the run-queue
        # wait could not be read).
        "over_budget_on_cpu": (
            sum((r.total_ms or 0.0) - (r.runqueue_ms or 0.0) > budget_ms for r in reads)
            if all(r.runqueue_ms is not None for r in reads)
            else None
        ),
        # where the time of each answer over budget went (stages as the API timed them)
        "over_budget_answers": [
            {
                "phase": r.phase,
                "timings_ms": r.timings_ms,
                "failures": r.failures,
                "runqueue_ms": None if r.runqueue_ms is None else round(r.runqueue_ms, 1),
            }
            for r in reads
            if (r.total_ms or 0.0) > budget_ms
        ][:20],
        "rate_per_s": round(len(load.posted) / max(1e-9, load.seconds), 1),
        "recover_s": None if recovered is None else round(recovered, 2),
    }


def recovered_after(load: Load, since: float, store: str, timeout_s: float = 120.0) -> float | None:
    """Seconds from ``since`` to the first answer that no longer names ``store`` among its
    failures (or None within ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for read in list(load.reads):
            if read.at > since and read.status == 200 and store not in read.failures:
                return read.at - since
        time.sleep(0.05)
    return None


def resumed_after(worker: Any, since: float, timeout_s: float = 120.0) -> float | None:
    """Seconds from ``since`` to the worker's next commit of log offsets (it commits only
    once the stores took what it read), or None within ``timeout_s``."""
    commits = int(worker.stats.commits)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if int(worker.stats.commits) > commits:
            return time.monotonic() - since
        time.sleep(0.05)
    return None
