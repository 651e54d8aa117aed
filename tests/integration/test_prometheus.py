"""The real Prometheus (Debian's binary, started by the services launcher on ports of this
test's own) scrapes ``recsys online serve --workers 2`` and a ``recsys nearline run``
worker, evaluates deploy/prometheus/rules.yml every second, and answers recording rules
through its HTTP API. The API's /metrics adds up both workers on every scrape."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from recsys.services import manager
from recsys.services.prometheus import Prometheus, PrometheusConfig
from shared.registry import ModelRegistry
from tests.integration.test_online_services import free_port
from tests.unit.test_online_helpers import make_bundle

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(240)]
REQUESTS = 40


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process group of this test's own, stopped (SIGTERM, then SIGKILL) after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, f"{url}: the process exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, (
            f"{url} not ready in {seconds} s: {log.read_text()[-2000:]}"
        )
        time.sleep(0.2)


def sample(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and (labels is None or s.labels == labels):
                return float(s.value)
    raise AssertionError(f"{name} {labels} not in /metrics")


def query(prometheus: str, expr: str, seconds: float = 60) -> float:
    """The first value of ``expr``, once Prometheus has one."""
    deadline = time.monotonic() + seconds
    while True:
        body: dict[str, Any] = httpx.get(
            f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5
        ).json()
        assert body["status"] == "success", body
        result = body["data"]["result"]
        if result:
            return float(result[0]["value"][1])
        assert time.monotonic() < deadline, f"{expr}: no value in {seconds} s"
        time.sleep(0.5)


def test_prometheus_scrapes_both_tiers_and_evaluates_the_rules(tmp_path: Path) -> None:
    home = tmp_path / "var"
    started = time.time()
    registry = ModelRegistry(f"file://{home}/models")
    registry.promote(make_bundle(registry))
    env = {**os.environ, "RECSYS_HOME": str(home)}
    recsys = str(Path(sys.executable).with_name("recsys"))
    api_port, nearline_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    serve = [recsys, "online", "serve", "--port", str(api_port), "--workers", "2"]
    worker = [recsys, "nearline", "run", "--metrics-port", str(nearline_port)]
    config = PrometheusConfig(
        port=free_port(),
        interval_s=1.0,
        api_targets=(f"127.0.0.1:{api_port}",),
        nearline_targets=(f"127.0.0.1:{nearline_port}",),
    )
    prom = Prometheus(tmp_path / "services", tmp_path / "cache", config)
    with (
        running(serve, env, tmp_path / "api.log") as api_proc,
        running(worker, env, tmp_path / "nearline.log") as worker_proc,
    ):
        wait_for(f"{api}/readyz", api_proc, tmp_path / "api.log")
        wait_for(
            f"http://127.0.0.1:{nearline_port}/metrics", worker_proc, tmp_path / "nearline.log"
        )
        outcome = manager.up_one(prom)
        try:
            assert outcome.action is manager.Action.STARTED
            url = prom.url
            # Scraped before the requests, so that the rate sees the counter rise.
            assert query(url, 'up{job="recsys-online"}') == 1
            assert query(url, 'up{job="recsys-nearline"}') == 1
            for i in range(REQUESTS):  # a connection each: the two workers share them out
                answer = httpx.get(f"{api}/v1/users/u{i % 10}/recommendations", timeout=10)
                assert answer.status_code == 200, answer.text
            # Every scrape, whichever worker answers it, counts both workers' requests; each
            # worker loaded the bundle once.
            for _ in range(4):
                text = httpx.get(f"{api}/metrics", timeout=5).text
                assert sample(text, "recsys_online_request_seconds_count") == REQUESTS
                assert sample(text, "recsys_online_bundle_swaps_total") == 2

            assert query(url, "recsys:online_requests:rate5m > 0") > 0
            age = query(url, "recsys:online_bundle_age_seconds")
            assert 0 <= age <= time.time() - started + 5
            assert query(url, "recsys:nearline_lag_records:sum") >= 0
            firing = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            assert [a["labels"]["alertname"] for a in firing] == []

            # recsys monitor reads the same rules through the HTTP API.
            monitor = [recsys, "monitor", "--json", "--prometheus", url]
            out = subprocess.run(
                monitor, env=env, capture_output=True, text=True, timeout=60, check=False
            )
            assert out.returncode == 0, out.stderr
            report = json.loads(out.stdout)
            assert report["source"] == "prometheus", report["note"]
            assert report["figures"]["requests_per_s"] > 0
            assert 0 < report["figures"]["requests_total"] <= REQUESTS
            assert report["figures"]["bundle_version"] is not None
            assert sorted((t["tier"], t["up"]) for t in report["targets"]) == [
                ("nearline", True),
                ("online", True),
            ]
        finally:
            manager.down_one(prom)
    assert manager.inspect(prom).state is manager.State.STOPPED
