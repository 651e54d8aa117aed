"""Impression events: what was shown, to whom, under which arm and bundle.

One event per answer (see :mod:`shared.events`): the shown list with positions and
sources, the arm, bundle, surface, request id and ``degraded`` in its context, so outcomes
can be joined to arms and to the very list that led to them.

The request path only encodes the event (a dict straight to ``orjson``: no model to build
and validate, a few microseconds) and appends it to a bounded queue; a thread of its own
drains the queue in batches into ``EventLog.publish``, which hands them to the producer's
batching without waiting for the broker. A backlog beyond ``max_pending`` events, a log
that is down and a delivery that failed are each dropped and counted
(``impressions_dropped``), never waited for. ``close`` sends what is queued and flushes.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque

import orjson

from online.metrics import OnlineMetrics
from online.recommend import Answer
from online.stores import StoreSlot
from shared.events import MAX_SHOWN, SCHEMA_VERSION, EventType
from shared.storage.event_log import EventLog

log = logging.getLogger(__name__)
_IMPRESSION = EventType.IMPRESSION.value
_WARN_EVERY_S = 10.0  # a log that is down fails every event: one warning per period


def encode_impression(answer: Answer) -> bytes:
    """The answer's impression event as wire JSON, byte for byte what ``Event.to_json`` of
    the same event gives (the fields in the model's order; the tests hold it to that)."""
    items = answer.items[:MAX_SHOWN]  # the API caps k at 100 already; readers reject more
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "event_id": uuid.uuid4().hex,
            "user_id": answer.user_id,
            "item_id": items[0].item_id,
            "type": _IMPRESSION,
            "value": None,
            "timestamp": round(time.time(), 3),
            "context": {
                "arm": answer.arm,
                "bundle": answer.bundle,
                "surface": answer.surface,
                "request_id": answer.request_id,
                "degraded": answer.degraded,
            },
            "shown": [
                {"item_id": item.item_id, "position": position, "source": item.sources[0]}
                for position, item in enumerate(items)
            ],
        }
    )


class ImpressionLogger:
    """Queue on the request path, publish from one sender thread (started on first use)."""

    def __init__(
        self,
        slot: StoreSlot[EventLog],
        metrics: OnlineMetrics,
        *,
        max_pending: int = 10_000,
        batch_size: int = 500,
        linger_s: float = 0.1,
        close_timeout_s: float = 10.0,
    ) -> None:
        self.slot = slot
        self.metrics = metrics
        self.max_pending = max_pending  # events (one per answer) waiting for the sender
        self.batch_size = batch_size
        # The sender waits this long after being woken, so that under load one publish
        # takes many events and the thread wakes (and takes the GIL) once per batch.
        self.linger_s = linger_s
        self.close_timeout_s = close_timeout_s
        self._queue: deque[tuple[str, bytes]] = deque()
        self._lock = threading.Lock()  # the bound check and append; closing
        self._wake = threading.Event()
        self._closing = threading.Event()  # cuts the linger short: close sends at once
        self._sender: threading.Thread | None = None
        self._closed = False
        self._published = False
        self._warned_at = -_WARN_EVERY_S

    @property
    def pending(self) -> int:
        return len(self._queue)

    def log(self, answer: Answer) -> None:
        """Queue the answer's impression event; never blocks, never raises."""
        if not answer.items:
            return
        try:
            record = (answer.user_id, encode_impression(answer))
        except Exception:  # a malformed answer must not fail the request that served it
            self.metrics.impressions_dropped.inc()
            log.exception("impression event not encoded")
            return
        with self._lock:
            if self._closed or self.slot.store is None or len(self._queue) >= self.max_pending:
                self.metrics.impressions_dropped.inc()
                return
            self._queue.append(record)
            if self._sender is None:
                self._sender = threading.Thread(target=self._run, name="impressions", daemon=True)
                self._sender.start()
        # Set only if clear: a set Event means the sender has yet to clear it, and it clears
        # before it drains, so it will take this record too (and Event.set costs a lock).
        if not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._closing.wait(self.linger_s)
            self._wake.clear()  # before draining: a record queued after this wakes us again
            self._send_queued()
            if self._closed and not self._queue:  # nothing is queued once closed
                return

    def _send_queued(self) -> None:
        while batch := self._take(self.batch_size):
            store = self.slot.store
            if store is None:
                self._dropped(RuntimeError("event log closed"), len(batch))
                continue
            try:
                store.publish(batch, on_error=self._failed)
                self._published = True
            except Exception as err:  # publish reports the log's failures; this is a bug
                log.exception("impressions not published")
                self._dropped(err, len(batch))

    def _take(self, most: int) -> list[tuple[str, bytes]]:
        batch: list[tuple[str, bytes]] = []
        try:
            while len(batch) < most:
                batch.append(self._queue.popleft())
        except IndexError:  # drained (close may empty the queue from its own thread)
            pass
        return batch

    def _failed(self, err: BaseException) -> None:
        """The log's errback, once per event not delivered (on the producer's thread)."""
        self._dropped(err, 1)

    def _dropped(self, err: BaseException, events: int) -> None:
        self.metrics.impressions_dropped.inc(events)
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("impression events not sent: %s", err)

    def close(self) -> None:
        """Send everything queued and flush the log (a clean shutdown loses nothing); what
        is still queued after ``close_timeout_s`` (a log that is down) is dropped, counted."""
        deadline = time.monotonic() + self.close_timeout_s
        with self._lock:
            if self._closed:
                return
            self._closed = True  # from here on nothing is queued
            sender = self._sender
        if sender is not None:
            self._closing.set()
            self._wake.set()
            sender.join(self.close_timeout_s)
        if left := self._take(len(self._queue)):
            self._dropped(TimeoutError("impression sender did not finish"), len(left))
        store = self.slot.store
        if store is None or not self._published:
            return
        try:
            store.flush(max(0.1, deadline - time.monotonic()))
        except Exception as err:  # what did not go will be reported to _failed
            log.warning("impression events not flushed: %s", err)
