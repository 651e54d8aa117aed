"""``recsys monitor --once --json`` against a real ``recsys online serve`` and ``recsys
nearline run --metrics-port`` on embedded stores, without Prometheus: the figures come from
two scrapes of their /metrics while requests are being made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from shared.registry import ModelRegistry
from tests.integration.test_online_services import free_port
from tests.integration.test_prometheus import running, wait_for
from tests.unit.test_online_helpers import make_bundle

pytestmark = pytest.mark.timeout(240)
BEFORE = 20  # requests made before the monitor starts: in the total, not in the rates


def test_monitor_reads_the_figures_from_the_services(tmp_path: Path) -> None:
    home = tmp_path / "var"
    registry = ModelRegistry(f"file://{home}/models")
    version = make_bundle(registry)
    registry.promote(version)
    env = {**os.environ, "RECSYS_HOME": str(home)}
    recsys = str(Path(sys.executable).with_name("recsys"))
    api_port, nearline_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    serve = [recsys, "online", "serve", "--port", str(api_port)]
    worker = [recsys, "nearline", "run", "--metrics-port", str(nearline_port)]
    monitor = [recsys, "monitor", "--once", "--json", "--interval", "3"]
    monitor += ["--api", f"127.0.0.1:{api_port}", "--nearline", f"127.0.0.1:{nearline_port}"]
    with (
        running(serve, env, tmp_path / "api.log") as api_proc,
        running(worker, env, tmp_path / "nearline.log") as worker_proc,
        httpx.Client(base_url=api, timeout=10) as client,
    ):
        wait_for(f"{api}/readyz", api_proc, tmp_path / "api.log")
        wait_for(
            f"http://127.0.0.1:{nearline_port}/metrics", worker_proc, tmp_path / "nearline.log"
        )
        for i in range(BEFORE):
            assert client.get(f"/v1/users/u{i}/recommendations").status_code == 200

        done = threading.Event()
        during: list[int] = []

        def traffic() -> None:  # inside the monitor's window, so that the rates see it
            while not done.is_set():
                answer = client.get(f"/v1/users/u{len(during) % 10}/recommendations")
                during.append(answer.status_code)
                time.sleep(0.02)

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            out = subprocess.run(
                monitor, env=env, capture_output=True, text=True, timeout=60, check=False
            )
        finally:
            done.set()
            thread.join(30)
    assert out.returncode == 0, out.stderr
    assert set(during) == {200}
    report = json.loads(out.stdout)
    assert report["source"] == "metrics"
    assert [(t["tier"], t["up"]) for t in report["targets"]] == [
        ("online", True),
        ("nearline", True),
    ]
    figures = report["figures"]
    assert BEFORE < figures["requests_total"] <= BEFORE + len(during)
    assert figures["requests_per_s"] > 0
    assert 0 < figures["p99_latency_ms"] < 10_000
    assert figures["degraded_ratio"] is not None and figures["error_ratio"] == 0
    assert figures["impressions_dropped_per_s"] == 0
    assert figures["bundle_version"] == version
    assert 0 <= figures["bundle_age_s"] < 600
    # Every answer logs an impression event, which the worker consumes.
    assert figures["events_per_s"] > 0
    assert figures["freshness_p99_ms"] > 0
    assert figures["nearline_lag_records"] >= 0
