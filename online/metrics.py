"""Prometheus metrics of the API, served at /metrics.

One process (``recsys online serve``, the default one worker): a registry of its own. Several
worker processes (``--workers N``) share one port, so a scrape reaches one of them at random;
``serve`` then sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, prometheus_client
keeps every value in a memory-mapped file per process there, and :meth:`OnlineMetrics.exposition`
adds up the files of all workers: counters and histograms are totals, and each gauge says
how its workers' values combine (``multiprocess_mode``).

Score drift (``recsys_online_drift_*``) is the exception: each worker keeps the scores it
served in a window of its own, and the worker that answers a scrape compares its window with
the live bundle's validation scores then, outside the shared files. A divergence does not add
up across workers and its max or mean over stale values would mislead; requests reach the
workers at random, so any one worker's window is a fair sample of what was served.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.drift import MIN_SCORES, SCORE_FEATURE, Profile, ScoreWindow, js, psi, score_histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 1.0)


class OnlineMetrics:
    """Latency per stage, candidates per source, fallbacks, errors, the bundle served.

    ``record=False`` gives metrics whose request-path children (:meth:`child`) record
    nothing: the warm-up's computation must not count, and with several workers every
    metric object of a process writes to the same shared files, whatever its registry.
    """

    def __init__(self, record: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.record = record
        # Read once, here: prometheus_client chose its value class from it at import.
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self._bundle_version: str | None = None
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
        self.degraded = Counter(
            "recsys_online_degraded_answers",
            "Answers given without a stage (a store late or down, a ranking error): degraded.",
            registry=r,
        )
        self.bundle_info = Gauge(
            "recsys_online_bundle",
            "1 for the bundle being served (with several workers: by any of them).",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.bundle_created = Gauge(
            "recsys_online_bundle_created_timestamp_seconds",
            "When the bundle being served was built (its manifest's created_at), in Unix"
            " seconds; with several workers the oldest any of them serves. Its age is"
            " time() minus this.",
            registry=r,
            multiprocess_mode="livemin",
        )
        # The ranker scores served from the live bundle, compared with its validation scores
        # only at scrape time (a ring of float32: the request path only copies into it).
        self.drift_profile: Profile | None = None
        self.scores = ScoreWindow()
        self._score_drift = ScoreDriftCollector(self)
        r.register(self._score_drift)
        self.impressions_dropped = Counter(
            "recsys_online_impressions_dropped",
            "Impression events (one per answer) not delivered: event log down, backlog"
            " full, or delivery failed.",
            registry=r,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: the request path labels a handful of
        series several times per request, and each ``labels`` call costs a lock and a hash."""
        if not self.record:
            return _DISCARD
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def set_bundle(self, version: str, created_at: float) -> None:
        """The bundle now served, and when it was built."""
        before = self._bundle_version
        if before is not None and before != version:
            # A removed series stays in a worker's shared file: zero it first.
            self.bundle_info.labels(before).set(0)
            self.bundle_info.remove(before)
        self.bundle_info.labels(version).set(1)
        self.bundle_created.set(created_at)
        self._bundle_version = version

    def set_drift(self, profile: Profile | None) -> None:
        """The live bundle's training profile (None: no score drift); a new window."""
        self.drift_profile = profile if profile is not None and profile.scores else None
        self.scores.clear()

    def record_scores(self, scores: npt.NDArray[np.floating[Any]], chosen: list[int]) -> None:
        """The ranker scores of the items an answer returns (positions ``chosen``)."""
        if self.record and self.drift_profile is not None and chosen:
            self.scores.add(scores[chosen])

    def exposition(self) -> bytes:
        """The text /metrics answers: this process's metrics, or every worker's added up."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        combined.register(self._score_drift)  # this worker's window (see the module doc)
        return generate_latest(combined)

    def close(self) -> None:
        """At the end of a worker: its live gauges stop counting (``live*`` modes)."""
        if self.multiprocess_dir is not None and self.record:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


class ScoreDriftCollector(Collector):
    """``recsys_online_drift_{psi,js}{feature="score"}`` at scrape time, from the window of
    served scores; no series while the bundle has no profile or the window is too small."""

    def __init__(self, metrics: OnlineMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        psi_family, js_family, size = self._families()
        profile, window = self.metrics.drift_profile, self.metrics.scores
        if profile is not None and profile.scores and profile.score_edges is not None:
            size.add_metric([], window.size)
            if window.size >= MIN_SCORES:
                live = score_histogram(window.values(), profile.score_edges)
                psi_family.add_metric([SCORE_FEATURE], psi(profile.scores, live))
                js_family.add_metric([SCORE_FEATURE], js(profile.scores, live))
        return iter((psi_family, js_family, size))

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "recsys_online_drift_psi",
                "Population stability index of the ranker scores served (this worker's window)"
                " against the live bundle's validation scores.",
                labels=["feature"],
            ),
            GaugeMetricFamily(
                "recsys_online_drift_js",
                "Jensen-Shannon divergence (bits, 0 to 1) of the ranker scores served against"
                " the live bundle's validation scores.",
                labels=["feature"],
            ),
            GaugeMetricFamily(
                "recsys_online_drift_window_scores",
                "Served scores in the score drift window (absent: the bundle has no profile).",
            ),
        )


class _Discard:
    """A metric child that records nothing."""

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


_DISCARD = _Discard()
