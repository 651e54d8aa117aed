"""The live side of drift (:mod:`shared.drift`) in the nearline worker: a window of the last
events, compared with the live bundle's training profile only when Prometheus scrapes.

Per polled batch the worker hands its events over; they become three small numpy arrays (a
dict lookup per event for the item's popularity bucket) appended to the window. A new live
bundle starts a new window: the buckets are the bundle's own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.drift import (
    DEFAULT_WINDOW,
    EVENT_FEATURES,
    MIN_EVENTS,
    NOT_INTERACTION,
    EventWindow,
    Reference,
    compare,
)
from shared.events import Event, EventType


class LiveDrift:
    """The window of the live bundle's events (none while the bundle has no profile)."""

    def __init__(self, min_events: int = MIN_EVENTS) -> None:
        self.min_events = min_events
        self.reference: Reference | None = None
        self.window: EventWindow | None = None

    def add(self, reference: Reference | None, events: Sequence[Event]) -> None:
        if reference is not self.reference:
            self.reference = reference
            self.window = None
            if reference is not None:
                listed = list(reference.profile.event_types or ())
                self.window = EventWindow(reference.profile.window or DEFAULT_WINDOW, listed)
        if reference is None or self.window is None or not events:
            return
        n, buckets, types = len(events), reference.item_buckets, self.window.types
        impression = EventType.IMPRESSION
        self.window.add(
            np.fromiter(
                (
                    NOT_INTERACTION if e.type is impression else buckets.get(e.item_id, -1)
                    for e in events
                ),
                np.int8,
                n,
            ),
            np.fromiter((types.get(e.type.value, -1) for e in events), np.int8, n),
            np.fromiter((hash(e.user_id) for e in events), np.int64, n),
        )

    def divergences(self) -> dict[str, tuple[float, float]]:
        """Feature -> (PSI, JS); empty without a profile or with fewer than ``min_events``."""
        window, reference = self.window, self.reference
        if window is None or reference is None or window.size < self.min_events:
            return {}
        return compare(reference.profile, window.histograms())


class DriftCollector(Collector):
    """``recsys_nearline_drift_{psi,js}{feature}``, computed at scrape time; no series at all
    while there is nothing to compare (a bundle without a profile, a window too small)."""

    def __init__(self, live: LiveDrift) -> None:
        self.live = live

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        psi, js, size = self._families()
        window = self.live.window
        if window is not None:
            size.add_metric([], window.size)
        for feature, (p, j) in sorted(self.live.divergences().items()):
            psi.add_metric([feature], p)
            js.add_metric([feature], j)
        return iter((psi, js, size))

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        features = ", ".join(EVENT_FEATURES)
        return (
            GaugeMetricFamily(
                "recsys_nearline_drift_psi",
                f"Population stability index of the live window against the live bundle's"
                f" training profile, per feature ({features}).",
                labels=["feature"],
            ),
            GaugeMetricFamily(
                "recsys_nearline_drift_js",
                "Jensen-Shannon divergence (bits, 0 to 1) of the live window against the live"
                " bundle's training profile, per feature.",
                labels=["feature"],
            ),
            GaugeMetricFamily(
                "recsys_nearline_drift_window_events",
                "Events in the drift window of the live bundle (absent: it has no profile).",
            ),
        )
