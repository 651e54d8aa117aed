"""The headline figures of ``recsys monitor``, from Prometheus or straight from /metrics.

Without Prometheus, each figure is computed the way the recording rules compute it
(``deploy/prometheus/rules.yml``), over the window between two scrapes of every target
instead of five minutes: rates are increases over the window, summed over targets; the
quantiles interpolate in histogram buckets as ``histogram_quantile`` does. A target that
does not answer is reported down with the reason and left out of the sums.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Series = tuple[str, tuple[tuple[str, str], ...]]
Scrape = dict[Series, float]  # one target's samples: (name, sorted labels) -> value

# What the Prometheus source asks, figure by figure: the recording rules where one exists.
# tests/unit/test_dashboards.py checks every name here as it checks the dashboards'.
PROMETHEUS_QUERIES: dict[str, str] = {
    "requests_per_s": "recsys:online_requests:rate5m",
    "requests_total": "sum(recsys_online_request_seconds_count)",
    "p99_latency_ms": "1000 * histogram_quantile(0.99,"
    " sum by (le) (rate(recsys_online_request_seconds_bucket[5m])))",
    "degraded_ratio": "recsys:online_degraded:ratio_rate5m",
    "error_ratio": "recsys:online_errors:ratio_rate5m",
    "impressions_dropped_per_s": "recsys:online_impressions_dropped:rate5m",
    "nearline_lag_records": "recsys:nearline_lag_records:sum",
    "freshness_p99_ms": "1000 * recsys:nearline_freshness_seconds:p99_rate5m",
    "events_per_s": "sum(rate(recsys_nearline_events_total[5m]))",
    "bundle_age_s": "recsys:online_bundle_age_seconds",
}
BUNDLE_QUERY = "recsys_online_bundle == 1"
JOBS = {"recsys-online": "online", "recsys-nearline": "nearline"}


@dataclass
class Figures:
    """The headline figures; None where there is nothing to compute them from."""

    requests_per_s: float | None = None
    requests_total: float | None = None
    p99_latency_ms: float | None = None
    degraded_ratio: float | None = None
    error_ratio: float | None = None
    impressions_dropped_per_s: float | None = None
    nearline_lag_records: float | None = None
    freshness_p99_ms: float | None = None
    events_per_s: float | None = None
    bundle_version: str | None = None
    bundle_age_s: float | None = None


@dataclass
class Target:
    tier: str  # online or nearline
    address: str
    up: bool
    reason: str | None = None


@dataclass
class Report:
    source: str  # "metrics" or "prometheus"
    window_s: float | None
    figures: Figures
    targets: list[Target] = field(default_factory=list)
    note: str | None = None  # e.g. why Prometheus was not used

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- /metrics ----------------------------------------------------------------------------


def parse_metrics(text: str) -> Scrape:
    """The samples of one /metrics answer (raises ValueError on text that does not parse)."""
    samples: Scrape = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return samples


def _increase(before: float, after: float) -> float:
    """A counter's increase; a smaller value is a restart, counted from zero (as rate())."""
    return after - before if after >= before else after


def increase(pairs: Iterable[tuple[Scrape, Scrape]], name: str) -> float:
    """sum(increase(name)) over every series of every target scraped twice."""
    total = 0.0
    for before, after in pairs:
        for key, value in after.items():
            if key[0] == name:
                total += _increase(before.get(key, 0.0), value)
    return total


def bucket_increase(pairs: Iterable[tuple[Scrape, Scrape]], name: str) -> dict[float, float]:
    """sum by (le) (increase(name_bucket)): cumulative counts per upper bound."""
    counts: dict[float, float] = defaultdict(float)
    for before, after in pairs:
        for key, value in after.items():
            if key[0] == name + "_bucket":
                le = float(dict(key[1])["le"])
                counts[le] += _increase(before.get(key, 0.0), value)
    return dict(counts)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile on cumulative bucket counts (the benchmarks' own
    :func:`recsys.bench.prom.quantile`): linear interpolation in the bucket the rank falls
    in; the highest finite bound when it falls in +Inf; None without observations or
    without the +Inf bucket."""
    from recsys.bench.prom import quantile

    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    return quantile(q, buckets)


def gauge_values(scrapes: Iterable[Scrape], name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(k[1]), v) for s in scrapes for k, v in s.items() if k[0] == name]


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def compute(
    online: list[tuple[Scrape, Scrape]],
    nearline: list[tuple[Scrape, Scrape]],
    window_s: float,
    now: float,
) -> Figures:
    """The figures from two scrapes of each target that answered both, ``window_s`` apart."""
    figures = Figures()
    if online:
        requests = increase(online, "recsys_online_request_seconds_count")
        latest = [after for _, after in online]
        figures.requests_per_s = requests / window_s
        figures.requests_total = sum(
            v for _, v in gauge_values(latest, "recsys_online_request_seconds_count")
        )
        figures.p99_latency_ms = _ms(
            histogram_quantile(0.99, bucket_increase(online, "recsys_online_request_seconds"))
        )
        degraded = increase(online, "recsys_online_degraded_answers_total")
        figures.degraded_ratio = _ratio(degraded, requests)
        figures.error_ratio = _ratio(increase(online, "recsys_online_errors_total"), requests)
        dropped = increase(online, "recsys_online_impressions_dropped_total")
        figures.impressions_dropped_per_s = dropped / window_s
        versions = sorted(
            labels["version"]
            for labels, v in gauge_values(latest, "recsys_online_bundle")
            if v == 1
        )
        figures.bundle_version = ", ".join(dict.fromkeys(versions)) or None
        created = [
            v
            for _, v in gauge_values(latest, "recsys_online_bundle_created_timestamp_seconds")
            if v > 0
        ]
        figures.bundle_age_s = now - min(created) if created else None
    if nearline:
        latest = [after for _, after in nearline]
        figures.nearline_lag_records = sum(
            v for _, v in gauge_values(latest, "recsys_nearline_lag_records")
        )
        figures.freshness_p99_ms = _ms(
            histogram_quantile(0.99, bucket_increase(nearline, "recsys_nearline_freshness_seconds"))
        )
        figures.events_per_s = increase(nearline, "recsys_nearline_events_total") / window_s
    return figures


def _reason(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def scrape(client: httpx.Client, url: str) -> Scrape | str:
    """One target's samples, or why there are none (one line)."""
    try:
        answer = client.get(url)
    except httpx.HTTPError as err:
        return _reason(err)
    if answer.status_code != 200:
        return f"HTTP {answer.status_code} from {url}"
    try:
        return parse_metrics(answer.text)
    except ValueError as err:
        return f"not Prometheus text: {_reason(err)}"


def scrape_all(client: httpx.Client, urls: dict[str, str]) -> dict[str, Scrape | str]:
    return {url: scrape(client, url) for url in urls}


def from_scrapes(
    urls: dict[str, str],
    before: dict[str, Scrape | str],
    after: dict[str, Scrape | str],
    window_s: float,
) -> Report:
    """The report from two rounds of scrapes; ``urls`` maps each URL to its tier."""
    pairs: dict[str, list[tuple[Scrape, Scrape]]] = {"online": [], "nearline": []}
    targets = []
    for url, tier in urls.items():
        first, second = before[url], after[url]
        if isinstance(second, str):
            targets.append(Target(tier, url, False, second))
        elif isinstance(first, str):
            targets.append(Target(tier, url, False, f"did not answer the first scrape: {first}"))
        else:
            targets.append(Target(tier, url, True))
            pairs[tier].append((first, second))
    figures = compute(pairs["online"], pairs["nearline"], window_s, time.time())
    return Report("metrics", window_s, figures, targets)


# --- Prometheus --------------------------------------------------------------------------


class PrometheusUnavailable(Exception):
    """Prometheus did not answer, or not as Prometheus; the message says how."""


def _get(client: httpx.Client, url: str, params: dict[str, str] | None = None) -> Any:
    try:
        answer = client.get(url, params=params)
        body = answer.json()
    except (httpx.HTTPError, ValueError) as err:
        raise PrometheusUnavailable(_reason(err)) from err
    if answer.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise PrometheusUnavailable(f"HTTP {answer.status_code} from {url}: {error or body}")
    return body["data"]


def _first_value(data: Any) -> float | None:
    result = data.get("result") or []
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value


def from_prometheus(client: httpx.Client, base: str) -> Report:
    """The report from Prometheus' HTTP API (raises PrometheusUnavailable)."""
    values = {
        name: _first_value(_get(client, f"{base}/api/v1/query", {"query": expr}))
        for name, expr in PROMETHEUS_QUERIES.items()
    }
    bundles = _get(client, f"{base}/api/v1/query", {"query": BUNDLE_QUERY})["result"]
    versions = sorted({b["metric"].get("version", "?") for b in bundles})
    figures = Figures(**values, bundle_version=", ".join(versions) or None)
    targets = [
        Target(
            JOBS[t["labels"]["job"]],
            t.get("scrapeUrl") or t["labels"].get("instance", "?"),
            t.get("health") == "up",
            t.get("lastError") or (None if t.get("health") == "up" else t.get("health")),
        )
        for t in _get(client, f"{base}/api/v1/targets", {"state": "active"})["activeTargets"]
        if t["labels"].get("job") in JOBS
    ]
    return Report("prometheus", None, figures, targets)
