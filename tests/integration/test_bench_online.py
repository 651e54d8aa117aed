"""`recsys bench online --quick --json`: the CI smoke test of the locust ramp.

Real Redis, Cassandra (candidates) and Kafka (events); the bare endpoint and the full path
under the realistic mix at 25 and 50 req/s. It checks that the report is written and that no
request failed (every answer is checked by the locustfile: status, shape, no duplicates, no
seen items); it asserts nothing about timing, which depends on the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import bench_cli


@pytest.mark.redis
@pytest.mark.cassandra
@pytest.mark.kafka
@pytest.mark.timeout(300)  # about 80 s on a quiet 2-core machine
def test_quick_run_writes_the_report_and_no_request_fails(tmp_path: Path) -> None:
    figures, folder = bench_cli(tmp_path / "home", "online", "--quick")
    for name in ("results.md", "results.json", "steps.csv", "stages.csv"):
        assert (folder / name).stat().st_size > 0, name
    for name in ("latency.png", "throughput.png", "stages.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert set(figures["headline"]) == {"bare", "mix"}
    assert figures["failed_requests"] == 0, (folder / "results.md").read_text()
    for name, target in figures["headline"].items():
        assert target["requests"] > 0, name
        at_50 = target["at_50"]
        assert at_50["failures"] == 0
        assert at_50["p50_ms"] <= at_50["p95_ms"] <= at_50["p99_ms"]
        assert "max_rate" in target
    mix = json.loads((folder / "results.json").read_text())["targets"]["mix"]
    measured = [s for s in mix["steps"] if not s["warmup"]]
    assert {s["rate"] for s in measured} == {25.0, 50.0}
    # the realistic mix reached every endpoint, and the API's /metrics gave per-stage figures
    assert {"home", "similar", "event"} <= set(mix["totals"]["by_name"])
    assert "handler" in figures["headline"]["mix"]["server_stages_at_50"]
    assert "| bare" in (folder / "results.md").read_text()
