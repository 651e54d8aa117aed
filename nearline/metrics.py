"""Prometheus metrics of one nearline worker, in a registry of its own.

Scrape ``/metrics`` on the port given by ``recsys nearline run --metrics-port``. Events per
second is ``rate(recsys_nearline_events_total[1m])`` in Prometheus; the worker also exports
its own ten-second figure for a glance without a Prometheus server, and the drift of its
live events from the live bundle's training data (:mod:`nearline.drift`).
"""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from nearline.drift import DriftCollector, LiveDrift

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NearlineMetrics:
    """The worker's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "recsys_nearline_events",
            "Records consumed, by outcome: applied (new to the state), duplicate (an event id "
            "already applied: a replay) or dead_letter (malformed).",
            ["outcome"],
            registry=r,
        )
        self.partition_events = Counter(
            "recsys_nearline_partition_events",
            "Records consumed from each partition of the events topic.",
            ["partition"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "recsys_nearline_batch_seconds",
            "Time to apply one polled batch to the state and hand it to the history and lake buffers.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.freshness_seconds = Histogram(
            "recsys_nearline_freshness_seconds",
            "From the record's log timestamp (when it was produced) to its state being written.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "recsys_nearline_lag_records",
            "Records behind the end of each assigned partition.",
            ["partition"],
            registry=r,
        )
        self.assigned = Gauge(
            "recsys_nearline_assigned_partitions",
            "1 for each partition of the events topic this worker owns right now.",
            ["partition"],
            registry=r,
        )
        self.events_per_second = Gauge(
            "recsys_nearline_events_per_second",
            "Records consumed per second over the last ten seconds.",
            registry=r,
        )
        self.commits = Counter(
            "recsys_nearline_commits", "Checkpoints committed to the log.", registry=r
        )
        self.commit_failures = Counter(
            "recsys_nearline_commit_failures",
            "Commits refused because the group rebalanced (those records are delivered again).",
            registry=r,
        )
        self.write_retries = Counter(
            "recsys_nearline_write_retries",
            "Batches retried after a store did not take them.",
            ["stage"],
            registry=r,
        )
        self.lake_files = Counter(
            "recsys_nearline_lake_files", "Parquet files written to the event lake.", registry=r
        )
        self._window: deque[tuple[float, int]] = deque()
        # Drift of the live events against the live bundle's profile: fed per batch,
        # compared only when scraped.
        self.drift = LiveDrift()
        r.register(DriftCollector(self.drift))

    def count_events(self, n: int, now: float | None = None) -> None:
        """Feed the ten-second events-per-second gauge."""
        now = time.monotonic() if now is None else now
        self._window.append((now, n))
        while self._window and self._window[0][0] < now - 10.0:
            self._window.popleft()
        span = max(now - self._window[0][0], 1.0) if self._window else 1.0
        self.events_per_second.set(sum(k for _, k in self._window) / span)

    def set_partitions(self, assigned: list[int], lags: dict[int, int]) -> None:
        self.lag.clear()
        self.assigned.clear()
        for partition in assigned:
            self.assigned.labels(str(partition)).set(1)
        for partition, lag in lags.items():
            self.lag.labels(str(partition)).set(lag)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` from a daemon thread, on this machine only unless ``host``
        says otherwise (a scraper on another host: ``--metrics-host 0.0.0.0``)."""
        start_http_server(port, addr=host, registry=self.registry)
