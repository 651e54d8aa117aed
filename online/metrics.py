"""Prometheus metrics of one API process, in a registry of its own (served at /metrics)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 1.0)


class OnlineMetrics:
    """Latency per stage, candidates per source, fallbacks, errors, the bundle served."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.request_seconds = Histogram(
            "recsys_online_request_seconds",
            "Recommendation request latency inside the handler.",
            ["arm"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "recsys_online_stage_seconds",
            "Latency of each stage of the request path.",
            ["stage"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.candidates = Counter(
            "recsys_online_candidates",
            "Candidates entering the ranker, by source.",
            ["source"],
            registry=r,
        )
        self.served = Counter(
            "recsys_online_served_items",
            "Items returned, by the first source that proposed them.",
            ["source"],
            registry=r,
        )
        self.fallbacks = Counter(
            "recsys_online_fallbacks",
            "Requests answered without a stage (timeout, store down, no data).",
            ["stage", "reason"],
            registry=r,
        )
        self.errors = Counter(
            "recsys_online_errors",
            "Unexpected errors caught on the request path (answered degraded).",
            ["where"],
            registry=r,
        )
        self.bundle_swaps = Counter(
            "recsys_online_bundle_swaps", "Bundles swapped in while serving.", registry=r
        )
        self.bundle_load_failures = Counter(
            "recsys_online_bundle_load_failures",
            "Bundles refused at load (missing or changed files, unloadable); the one before"
            " kept serving.",
            registry=r,
        )
        self.bundle_info = Gauge(
            "recsys_online_bundle", "1 for the bundle being served.", ["version"], registry=r
        )
        self.impressions_dropped = Counter(
            "recsys_online_impressions_dropped",
            "Impression events (one per answer) not delivered: event log down, backlog"
            " full, or delivery failed.",
            registry=r,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: the request path labels a handful of
        series several times per request, and each ``labels`` call costs a lock and a hash."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def set_bundle(self, version: str) -> None:
        self.bundle_info.clear()
        self.bundle_info.labels(version).set(1)
