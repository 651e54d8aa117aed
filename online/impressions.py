"""Impression events: what was shown, to whom, under which arm and bundle.

Sent after the response (a background task), from one thread of its own, so the event log
never delays an answer; a backlog beyond ``max_pending`` batches is dropped and counted.
The arm and bundle travel in the event's ``context``, so outcomes can be joined to arms.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from online.metrics import OnlineMetrics
from online.recommend import Answer
from online.stores import StoreSlot
from shared.events import Event, EventType
from shared.storage.event_log import EventLog

log = logging.getLogger(__name__)


def impression_events(answer: Answer) -> list[Event]:
    return [
        Event(
            user_id=answer.user_id,
            item_id=item.item_id,
            type=EventType.IMPRESSION,
            context={
                "arm": answer.arm,
                "bundle": answer.bundle,
                "position": position,
                "surface": answer.surface,
                "source": item.sources[0],
                "degraded": answer.degraded,
            },
        )
        for position, item in enumerate(answer.items)
    ]


class ImpressionLogger:
    def __init__(
        self, slot: StoreSlot[EventLog], metrics: OnlineMetrics, max_pending: int = 100
    ) -> None:
        self.slot = slot
        self.metrics = metrics
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="impressions")
        self._pending = 0
        self._lock = threading.Lock()

    def log(self, answer: Answer) -> None:
        """Queue the answer's impressions; never blocks, never raises."""
        if not answer.items:
            return
        with self._lock:
            if self.slot.store is None or self._pending >= self.max_pending:
                self.metrics.impressions_dropped.inc(len(answer.items))
                return
            self._pending += 1
        self._executor.submit(self._send, answer)

    def _send(self, answer: Answer) -> None:
        try:
            store = self.slot.store
            if store is None:
                raise RuntimeError("event log closed")
            store.append([(e.user_id, e.to_json()) for e in impression_events(answer)])
        except Exception as err:
            self.metrics.impressions_dropped.inc(len(answer.items))
            log.warning("impressions not sent: %s", err)
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
