"""recsys monitor's figures from /metrics text: the metrics objects of both tiers record known
traffic, their exposition is parsed and the figures computed from two scrapes; targets
that do not answer are down with a reason; the command's exit codes."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from rich.console import Console

from nearline.metrics import NearlineMetrics
from online.metrics import OnlineMetrics
from recsys.monitor import (
    Figures,
    Scrape,
    from_prometheus,
    from_scrapes,
    histogram_quantile,
    parse_metrics,
    scrape,
)
from recsys.monitor_cli import metrics_url, render
from tests.unit.test_cli import _run


def exposition(metrics: OnlineMetrics | NearlineMetrics) -> Scrape:
    return parse_metrics(generate_latest(metrics.registry).decode())


def test_histogram_quantile_interpolates_as_prometheus() -> None:
    # 98 observations up to 0.005, 2 more up to 0.1: rank 99 is halfway into (0.08, 0.1].
    buckets = {0.005: 98.0, 0.08: 98.0, 0.1: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.09)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.005 * 50 / 98)
    # In +Inf: the highest finite bound; no observations: nothing.
    assert histogram_quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == 0.1
    assert histogram_quantile(0.99, {0.1: 0.0, float("inf"): 0.0}) is None


def test_online_figures_from_two_scrapes() -> None:
    metrics = OnlineMetrics()
    metrics.request_seconds.labels("control").observe(0.5)  # before the window: not in rates
    metrics.set_bundle("v7", created_at=1_000.0)
    before = exposition(metrics)
    for i in range(100):
        metrics.request_seconds.labels("control" if i % 2 else "treatment").observe(
            0.003 if i < 98 else 0.09
        )
    metrics.degraded.inc(5)
    metrics.errors.labels("rank").inc(2)
    metrics.impressions_dropped.inc(4)
    after = exposition(metrics)
    url = "http://api/metrics"
    report = from_scrapes({url: "online"}, {url: before}, {url: after}, window_s=2.0)
    f = report.figures
    assert f.requests_per_s == 50.0
    assert f.requests_total == 101
    assert f.p99_latency_ms == pytest.approx(90.0)
    assert f.degraded_ratio == 0.05
    assert f.error_ratio == 0.02
    assert f.impressions_dropped_per_s == 2.0
    assert f.bundle_version == "v7"
    assert f.bundle_age_s is not None and f.bundle_age_s > 1_000_000
    assert f.nearline_lag_records is None and f.events_per_s is None
    assert report.targets[0].up


def test_nearline_figures_add_up_workers() -> None:
    workers = [NearlineMetrics(), NearlineMetrics()]
    befores = [exposition(w) for w in workers]
    for n, worker in enumerate(workers, start=1):
        worker.events.labels("applied").inc(10 * n)
        worker.set_partitions([n], {n: 100 * n})
        for _ in range(10):
            worker.freshness_seconds.observe(0.02)
    urls = {"http://w1/metrics": "nearline", "http://w2/metrics": "nearline"}
    afters = [exposition(w) for w in workers]
    report = from_scrapes(
        urls, dict(zip(urls, befores, strict=True)), dict(zip(urls, afters, strict=True)), 1.0
    )
    f = report.figures
    assert f.events_per_s == 30.0
    assert f.nearline_lag_records == 300
    assert f.freshness_p99_ms is not None and 10 < f.freshness_p99_ms <= 25  # (0.01, 0.025]
    assert f.requests_per_s is None


def test_a_counter_reset_counts_from_zero() -> None:
    key = ("recsys_online_request_seconds_count", (("arm", "control"),))
    url = "http://api/metrics"
    report = from_scrapes({url: "online"}, {url: {key: 500.0}}, {url: {key: 20.0}}, 1.0)
    assert report.figures.requests_per_s == 20.0


def test_a_target_down_is_reported_with_its_reason() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "broken":
            return httpx.Response(500)
        return httpx.Response(200, text="this is { not prometheus\n")

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert scrape(client, "http://broken/metrics") == "HTTP 500 from http://broken/metrics"
        garbage = scrape(client, "http://garbage/metrics")
    assert isinstance(garbage, str) and garbage.startswith("not Prometheus text")
    with httpx.Client(timeout=2) as client:
        refused = scrape(client, "http://127.0.0.1:1/metrics")
    assert isinstance(refused, str) and "refused" in refused.lower()

    url, late = "http://api/metrics", "http://late/metrics"
    report = from_scrapes(
        {url: "online", late: "online"},
        {url: {}, late: "connection refused"},
        {url: "timed out", late: {}},
        1.0,
    )
    assert [(t.up, t.reason) for t in report.targets] == [
        (False, "timed out"),
        (False, "did not answer the first scrape: connection refused"),
    ]
    assert report.figures.requests_per_s is None
    console = Console(file=io.StringIO(), width=120)
    console.print(render(report))
    assert "down: timed out" in console.file.getvalue()  # type: ignore[attr-defined]


def test_prometheus_answers_become_figures() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/targets":
            active = [
                {"labels": {"job": "recsys-online", "instance": "a:8000"}, "health": "up"},
                {
                    "labels": {"job": "recsys-nearline", "instance": "b:9108"},
                    "health": "down",
                    "lastError": "connection refused",
                },
                {"labels": {"job": "prometheus", "instance": "p"}, "health": "up"},
            ]
            return httpx.Response(
                200, json={"status": "success", "data": {"activeTargets": active}}
            )
        query = request.url.params["query"]
        if query == "recsys_online_bundle == 1":
            result = [{"metric": {"version": "v3"}, "value": [0, "1"]}]
        elif query == "recsys:online_requests:rate5m":
            result = [{"metric": {}, "value": [0, "12.5"]}]
        elif query.startswith("recsys:online_degraded"):
            result = [{"metric": {}, "value": [0, "NaN"]}]  # 0/0: no requests
        else:
            result = []
        return httpx.Response(200, json={"status": "success", "data": {"result": result}})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        report = from_prometheus(client, "http://prom")
    assert report.figures.requests_per_s == 12.5
    assert report.figures.degraded_ratio is None
    assert report.figures.bundle_version == "v3"
    assert [(t.tier, t.up, t.reason) for t in report.targets] == [
        ("online", True, None),
        ("nearline", False, "connection refused"),
    ]


def test_metrics_urls() -> None:
    assert metrics_url("--api", "127.0.0.1:8000") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("--api", "https://h/") == "https://h/metrics"
    assert metrics_url("--api", "http://h:9/custom") == "http://h:9/custom"


def test_monitor_exits_0_with_targets_down_and_2_for_bad_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    argv = ["monitor", "--json", "--interval", "0.1", "--api", "127.0.0.1:1", "--nearline"]
    assert _run([*argv, "127.0.0.1:2", "--prometheus", "http://127.0.0.1:3"], monkeypatch) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "metrics"
    assert "Prometheus at http://127.0.0.1:3 did not answer" in report["note"]
    assert [t["up"] for t in report["targets"]] == [False, False]
    assert set(report["figures"]) == {f.name for f in dataclasses.fields(Figures)}

    assert _run(["monitor", "--once", "--api", "ftp://h"], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --api 'ftp://h': expected host:port or an http(s):// URL"
