"""Per-stage latency from two scrapes of the online API's ``/metrics`` (pure).

The API keeps a Prometheus histogram per stage of the request path
(``recsys_online_stage_seconds{stage=...}``) and one of the whole handler
(``recsys_online_request_seconds{arm=...}``). The difference between a scrape before and one
after a load step is that step's histogram: its count, mean and, interpolated within the
buckets as Prometheus' ``histogram_quantile`` does, its p50 and p99.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

STAGE_METRIC = "recsys_online_stage_seconds"
REQUEST_METRIC = "recsys_online_request_seconds"
HANDLER = "handler"  # the name the whole handler's row gets beside the stages

# (label value) -> {"buckets": {upper bound: cumulative count}, "sum": s, "count": n}
Histograms = dict[str, dict[str, Any]]


def histograms(text: str) -> Histograms:
    """Stage histograms (and the handler's, summed over arms) from a ``/metrics`` page."""
    out: Histograms = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (STAGE_METRIC, REQUEST_METRIC):
            continue
        for sample in family.samples:
            key = sample.labels.get("stage", "") if family.name == STAGE_METRIC else HANDLER
            entry = out.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                entry["buckets"][bound] = entry["buckets"].get(bound, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] += sample.value
            elif sample.name.endswith("_count"):
                entry["count"] += sample.value
    return out


def difference(before: Histograms, after: Histograms) -> Histograms:
    """What was observed between the two scrapes."""
    out: Histograms = {}
    for key, late in after.items():
        early = before.get(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
        out[key] = {
            "buckets": {b: n - early["buckets"].get(b, 0.0) for b, n in late["buckets"].items()},
            "sum": late["sum"] - early["sum"],
            "count": late["count"] - early["count"],
        }
    return out


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """``histogram_quantile``: linear within the bucket holding the q-th observation; the
    largest finite bound when it falls in the +Inf bucket."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def stage_latency(before: str, after: str) -> dict[str, dict[str, Any]]:
    """Per stage (and ``handler``): requests, mean, p50 and p99 in ms between two scrapes."""
    out: dict[str, dict[str, Any]] = {}
    for key, h in difference(histograms(before), histograms(after)).items():
        if h["count"] <= 0:
            continue
        p50, p99 = quantile(0.5, h["buckets"]), quantile(0.99, h["buckets"])
        out[key] = {
            "count": int(h["count"]),
            "mean_ms": round(h["sum"] / h["count"] * 1000, 3),
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
        }
    return out


def scrape(url: str, timeout_s: float = 5.0) -> str:
    """The ``/metrics`` page at ``url``; "" when it does not answer (no stage figures then)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"metrics URL must be http(s)://, got {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 (checked)
            return str(answer.read().decode())
    except OSError:
        return ""
