"""The nearline worker: events topic -> user state, event history and event lake.

One member of a consumer group. Per polled batch it parses the records (malformed ones go
to the dead-letter topic with their error), folds the events into the users' state (one
pipelined round trip, idempotent per event id), buffers them for the history (an append,
idempotent on event id, starts once ``history_flush_records`` are buffered or the oldest
has waited ``history_linger_s``) and for the lake. At each checkpoint (every ``commit_interval_s``
or ``commit_records``, before partitions are revoked, and on shutdown) it writes the lake
files and only then commits the log offsets; the periodic one writes them in the writer
thread and commits on a later pass of the loop, so reading goes on meanwhile.
At-least-once delivery plus idempotent writes: no event is lost, none counted twice.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import ValidationError

from nearline.embeddings import ItemVectors, LiveItemVectors
from nearline.lake import LakeWriter
from nearline.metrics import NearlineMetrics
from shared.errors import ConfigError
from shared.events import Event, EventType
from shared.storage.event_log import CommitFailed, EventLog, LogConsumer, LogRecord
from shared.storage.history import EventHistoryStore
from shared.storage.user_state import StateEvent, UserStateStore

log = logging.getLogger(__name__)

# Events that say the user engaged with the item: they enter the recent items (the seeds of
# fresh candidates). Impressions and skips are counted but seed nothing. The "impression"
# counter counts impression events: lists shown (one per answer) in the current shape, items
# shown in the old per-item shape; the items of a list are in the lake.
ENGAGED = frozenset({EventType.CLICK, EventType.PLAY, EventType.RATE, EventType.ADD_TO_LIST})


@dataclass(frozen=True)
class WorkerConfig:
    """How one worker consumes; the defaults suit a few thousand events per second."""

    group_id: str = "nearline"
    topic: str | None = None  # default: the event log's topic
    dead_letter_topic: str | None = None  # default: "<topic>.dead-letter"
    poll_records: int = 1000
    poll_timeout_s: float = 0.5
    commit_interval_s: float = 1.0
    commit_records: int = 2000
    half_life_s: float = 1800.0  # of the session vector's time decay
    max_backoff_s: float = 5.0
    history_in_flight: int = 16  # history writes in flight while the next batches proceed
    # The history is written in coalesced appends, not one per polled batch: at 1,000 events/s
    # a batch is about 20 events, and writing them every 20 ms cost Cassandra 38% of a core
    # and the client 16%, against 15% and 7% when the same events went every 200 ms.
    # Nothing waits on the history but the checkpoint, which writes what is buffered first.
    history_linger_s: float = 0.2  # the longest an event waits for its history write to start
    history_flush_records: int = 1000  # or as soon as this many are buffered


@dataclass
class WorkerStats:
    """What one run did, with the time spent per stage (the benchmark reads these)."""

    records: int = 0
    applied: int = 0  # events new to the state
    duplicates: int = 0  # ids the state had already: replays, or retries after a lost reply
    dead_letters: int = 0
    batches: int = 0
    commits: int = 0
    commit_failures: int = 0
    # perf_counter() when the first records arrived: before it, the member was joining its
    # group and fetching (about 0.3 s against a local broker), a cost paid once per start.
    first_records_at: float | None = None
    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("parse", "state", "history", "lake", "commit"), 0.0)
    )


@dataclass(frozen=True)
class _Checkpoint:
    """A checkpoint whose lake files are being written: what to commit when they are."""

    positions: dict[int, int]
    files: Future[list[Path]]
    history_seq: int  # the history writes queued before the files (the thread runs in order)


@dataclass
class _Parsed:
    good: list[tuple[LogRecord, Event]]
    dead: list[tuple[LogRecord, str]]
    dead_sent: bool = False  # a retried batch does not send its dead letters twice


def parse(records: Sequence[LogRecord]) -> _Parsed:
    """Split records into events and poison messages (with the reason)."""
    parsed = _Parsed([], [])
    for record in records:
        try:
            event = Event.from_json(record.value)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            parsed.dead.append((record, f"{where}: {first['msg']}"))
            continue
        except (TypeError, ValueError) as err:  # e.g. a value that is not bytes at all
            parsed.dead.append((record, f"body: {err}"))
            continue
        if record.key != event.user_id:
            # Keyed elsewhere, the user's events could interleave across partitions.
            parsed.dead.append((record, f"key {record.key!r} is not the user id"))
            continue
        parsed.good.append((record, event))
    return parsed


def dead_letter(record: LogRecord, error: str) -> bytes:
    """The dead-letter record: the error, where the record came from, its exact bytes."""
    value = record.value if isinstance(record.value, bytes) else b""
    return orjson.dumps(
        {
            "error": error,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key,
            "timestamp_ms": record.timestamp_ms,
            "value": value.decode("utf-8", errors="replace"),
            "value_b64": base64.b64encode(value).decode(),
            "failed_at": time.time(),
        }
    )


def state_events(events: Sequence[Event], vectors: ItemVectors | None) -> list[StateEvent]:
    return [
        StateEvent(
            e.event_id,
            e.user_id,
            e.item_id,
            e.type.value,
            e.timestamp,
            vector=None if vectors is None else _vector(e, vectors),
            recent=e.type in ENGAGED,
        )
        for e in events
    ]


def _vector(event: Event, vectors: ItemVectors) -> npt.NDArray[np.float32] | None:
    """What the event folds into the session vector: its item's vector, or for a list shown
    the mean of its items' (the direction k per-item impressions pulled it, with one
    event's weight: a list shown says less of a taste than a play)."""
    if event.shown is None:
        return vectors.get(event.item_id)
    found = [v for v in (vectors.get(s.item_id) for s in event.shown) if v is not None]
    return np.mean(found, axis=0, dtype=np.float32) if found else None


class Worker:
    """Consume, apply, checkpoint; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        log_store: EventLog,
        state: UserStateStore,
        history: EventHistoryStore,
        lake: LakeWriter,
        *,
        vectors: LiveItemVectors | None = None,
        config: WorkerConfig | None = None,
        metrics: NearlineMetrics | None = None,
    ) -> None:
        self.config = config or WorkerConfig()
        self._log = log_store
        self._state = state
        self._history = history
        self._lake = lake
        self._vectors = vectors
        self.metrics = metrics or NearlineMetrics()
        self.stats = WorkerStats()
        self.topic = self.config.topic or log_store.topic
        self.dead_letter_topic = self.config.dead_letter_topic or f"{self.topic}.dead-letter"
        # A checkpoint still being written plus the events read since: a replay after a crash
        # re-reads up to twice commit_records + poll_records, all of which must still be
        # remembered by the state's dedupe window.
        if 2 * (self.config.commit_records + self.config.poll_records) > state.dedupe_window:
            raise ConfigError(
                f"nearline: 2 x (commit_records + poll_records) must stay within the state's"
                f" dedupe window ({state.dedupe_window}), else a replay could count an event twice"
            )
        self._consumer: LogConsumer | None = None
        self._uncommitted = 0
        self._since_commit = time.monotonic()
        self._stop = threading.Event()
        self._writer_pool: ThreadPoolExecutor | None = None
        self._history_pending: list[tuple[int, Future[None], list[Event]]] = []  # (seq, ...)
        self._history_seq = 0
        self._history_buffer: list[Event] = []  # applied to the state, history not yet started
        self._history_buffered_at = 0.0  # monotonic time of the oldest buffered event
        self._in_flight: _Checkpoint | None = None  # lake files being written, then a commit

    def run(
        self, stop: threading.Event | None = None, max_records: int | None = None
    ) -> WorkerStats:
        """Consume until ``stop`` is set (or ``max_records`` were read); then checkpoint."""
        stop = self._stop = stop or threading.Event()
        self._log.create_topic(self.dead_letter_topic)
        consumer = self._log.consumer(self.config.group_id, self.topic, on_revoke=self.checkpoint)
        self._consumer = consumer
        try:
            while not stop.is_set():
                records = consumer.poll(self.config.poll_records, self.config.poll_timeout_s)
                if records and self.stats.first_records_at is None:
                    self.stats.first_records_at = time.perf_counter()
                if records and not self._process(records, stop):
                    return self.stats  # stopped while a store was down: leave it uncommitted
                if not self._land(block=False):
                    return self.stats  # stopped while a store was down: leave it uncommitted
                self._flush_history(force=False)
                self.metrics.set_partitions(consumer.assignment(), consumer.lag())
                if self._checkpoint_due():
                    self._begin_checkpoint()
                if max_records is not None and self.stats.records >= max_records:
                    break
            self.checkpoint()
        finally:
            consumer.close()
            self._consumer = None
            if self._writer_pool is not None:
                self._writer_pool.shutdown(wait=True)
                self._writer_pool = None
            self._history_pending.clear()
            self._history_buffer = []
            self._in_flight = None
        return self.stats

    def _checkpoint_due(self) -> bool:
        if not self._uncommitted:
            return False
        age = time.monotonic() - self._since_commit
        return (
            age >= self.config.commit_interval_s or self._uncommitted >= self.config.commit_records
        )

    def checkpoint(self) -> None:
        """Land the checkpoint in flight, then write the lake files, finish the history
        writes and commit what was read since, before returning (on revoke and shutdown).

        The lake files go first, while the last history writes are still in flight, so the
        checkpoint blocks for the longer of the two rather than their sum. Written files
        without a commit are harmless: a replay rewrites them (see lake.py), and at most one
        checkpoint's files are ever written but uncommitted.
        """
        if self._consumer is None or not self._land(block=True):
            self._uncommitted = 0  # stopped with a store down: nothing is committed
            return
        if not self._uncommitted:
            return
        self._flush_history(force=True)
        started = time.perf_counter()
        self.metrics.lake_files.inc(len(self._lake.flush()))
        self.stats.seconds["lake"] += time.perf_counter() - started
        if not self._settle_history(0):
            self._uncommitted = 0  # stopped with a store down: nothing is committed
            return
        self._commit(None)

    def _begin_checkpoint(self) -> None:
        """The periodic checkpoint, off the poll loop: the buffered rows go to the writer
        thread (behind the history writes already queued there) with the positions read so
        far; :meth:`_land` commits those positions once the files and those history writes
        are done. One checkpoint at a time."""
        if self._consumer is None or not self._land(block=True):
            return
        self._flush_history(force=True)
        rows, positions = self._lake.take(), self._consumer.positions()
        files = self._writer().submit(self._write_lake, rows)
        self._in_flight = _Checkpoint(positions, files, self._history_seq)
        self._uncommitted = 0
        self._since_commit = time.monotonic()

    def _write_lake(self, rows: dict[tuple[str, int], Any]) -> list[Path]:
        started = time.perf_counter()
        written = self._lake.write(rows)
        self.stats.seconds["lake"] += time.perf_counter() - started
        return written

    def _land(self, block: bool) -> bool:
        """Commit the checkpoint in flight once its files are written (at once unless
        ``block``); False if the worker stopped while a history write was being redone."""
        pending = self._in_flight
        if pending is None or (not block and not pending.files.done()):
            return True
        self.metrics.lake_files.inc(len(pending.files.result()))  # a failed write raises
        # The writer thread runs in order: the history writes queued before the files are
        # done too; settle them (redoing any that failed) before committing.
        while self._history_pending and self._history_pending[0][0] <= pending.history_seq:
            if not self._settle_oldest_history():
                return False
        self._in_flight = None
        self._commit(pending.positions)
        return True

    def _commit(self, positions: dict[int, int] | None) -> None:
        assert self._consumer is not None
        started = time.perf_counter()
        try:
            self._consumer.commit(positions)
            self.stats.commits += 1
            self.metrics.commits.inc()
        except CommitFailed as err:
            self.stats.commit_failures += 1
            self.metrics.commit_failures.inc()
            log.warning("%s", err)
        self.stats.seconds["commit"] += time.perf_counter() - started
        if positions is None:
            self._uncommitted = 0
            self._since_commit = time.monotonic()

    def _process(self, records: list[LogRecord], stop: threading.Event) -> bool:
        """Apply one batch, retrying while a store is down; False if stopped meanwhile."""
        started = time.perf_counter()
        parsed = parse(records)
        self.stats.seconds["parse"] += time.perf_counter() - started
        backoff, applied = 0.1, 0
        while True:
            try:
                # Each event applies at most once, so a retry after a partial success adds
                # only what the failed attempt did not: summing the attempts is exact.
                applied += self._apply(parsed)
                break
            except Exception as err:  # a store that did not take the batch: retry it whole
                if not self._backoff(err, backoff, stop):
                    return False
                backoff = min(backoff * 2, self.config.max_backoff_s)
        if not self._settle_history(self.config.history_in_flight):
            return False
        for record, event in parsed.good:
            self._lake.add(record.partition, record.offset, event)
        if self._vectors is not None and parsed.good:
            vectors = self._vectors.current()
            self.metrics.drift.add(
                vectors.drift if vectors is not None else None, [e for _, e in parsed.good]
            )
        self._uncommitted += len(records)
        self._count(records, parsed, applied)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return True

    def _apply(self, parsed: _Parsed) -> int:
        """Dead letters, state, history (started); returns how many events were new to the state."""
        t0 = time.perf_counter()
        if parsed.dead and not parsed.dead_sent:
            self._log.append(
                [(r.key, dead_letter(r, error)) for r, error in parsed.dead],
                topic=self.dead_letter_topic,
            )
            parsed.dead_sent = True
        events = [event for _, event in parsed.good]
        if not events:
            return 0
        vectors = self._vectors.current() if self._vectors is not None else None
        applied = self._state.apply_events(state_events(events, vectors), self.config.half_life_s)
        t1 = time.perf_counter()
        now_ms = time.time() * 1000
        for record, _ in parsed.good:
            self.metrics.freshness_seconds.observe(max(0.0, now_ms - record.timestamp_ms) / 1000)
        self.stats.seconds["state"] += t1 - t0
        if not self._history_buffer:
            self._history_buffered_at = time.monotonic()
        self._history_buffer.extend(events)
        self._flush_history(force=False)
        return applied

    def _flush_history(self, force: bool) -> None:
        """Start writing the buffered events to the history (in the writer thread) if forced,
        if enough are buffered, or if the oldest has waited ``history_linger_s``."""
        buffered = self._history_buffer
        if not buffered or not (
            force
            or len(buffered) >= self.config.history_flush_records
            or time.monotonic() - self._history_buffered_at >= self.config.history_linger_s
        ):
            return
        self._history_buffer = []
        future = self._writer().submit(self._timed, "history", self._history.append, buffered)
        self._history_seq += 1
        self._history_pending.append((self._history_seq, future, buffered))

    def _writer(self) -> ThreadPoolExecutor:
        """The one writer thread: history batches and lake files, in the order submitted."""
        if self._writer_pool is None:
            self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="nearline-writer")
        return self._writer_pool

    def _timed(self, stage: str, write: Callable[[list[Event]], None], events: list[Event]) -> None:
        started = time.perf_counter()
        write(events)
        self.stats.seconds[stage] += time.perf_counter() - started

    def _settle_history(self, keep: int) -> bool:
        """Wait until at most ``keep`` history writes are in flight, redoing failed ones."""
        while len(self._history_pending) > keep:
            if not self._settle_oldest_history():
                return False
        return True

    def _settle_oldest_history(self) -> bool:
        """Wait for the oldest history write, redoing it while it fails; False if stopped."""
        _, future, events = self._history_pending.pop(0)
        error = future.exception()
        backoff = 0.1
        while error is not None:
            if not self._backoff(error, backoff, self._stop):
                return False
            backoff = min(backoff * 2, self.config.max_backoff_s)
            try:
                self._history.append(events)  # idempotent on event id
                error = None
            except Exception as err:
                error = err
        return True

    def _backoff(self, err: BaseException, seconds: float, stop: threading.Event) -> bool:
        """Count and log a failed write, wait; False if asked to stop meanwhile."""
        self.metrics.write_retries.labels(type(err).__name__).inc()
        log.warning("a store did not take the batch, retrying in %.1f s: %s", seconds, err)
        return not stop.wait(seconds)

    def _count(self, records: list[LogRecord], parsed: _Parsed, applied: int) -> None:
        duplicates = len(parsed.good) - applied
        self.stats.records += len(records)
        self.stats.batches += 1
        self.stats.applied += applied
        self.stats.duplicates += duplicates
        self.stats.dead_letters += len(parsed.dead)
        self.metrics.count_events(len(records))
        self.metrics.events.labels("applied").inc(applied)
        self.metrics.events.labels("duplicate").inc(duplicates)
        self.metrics.events.labels("dead_letter").inc(len(parsed.dead))
        by_partition: dict[int, int] = {}
        for record in records:
            by_partition[record.partition] = by_partition.get(record.partition, 0) + 1
        for partition, n in by_partition.items():
            self.metrics.partition_events.labels(str(partition)).inc(n)
