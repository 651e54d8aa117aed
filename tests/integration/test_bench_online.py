"""`recsys bench online --quick --json`: the CI smoke tests of the ramp, with locust and with
vegeta.

Real Redis, Cassandra (candidates) and Kafka (events and impressions); the bare endpoint and
the full path (under the realistic mix with locust, alone with vegeta) at 25 and 50 req/s,
and the floor (the full path's external calls only) beside the full path at 50 req/s.
They check that the report is written, that no request failed (every answer is checked:
status, shape, no duplicates, no seen items) and that the API's CPU per request was
measured; they assert nothing about timing, which depends on the machine.

The vegeta test needs vegeta: `make test` (scripts/test.sh) installs it.
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
        # the CPU the API spent per answered request, from /proc of the server it started
        assert target["cpu_ms_per_request"] > 0, target["cpu_basis"]
        assert target["generator"] == "locust"
    assert figures["headline"]["mix"]["impressions"] == "on"
    assert figures["capacity_ratio"] is None  # no full target in --quick
    assert figures["floor_ratio"] is None  # nor a floor
    mix = json.loads((folder / "results.json").read_text())["targets"]["mix"]
    measured = [s for s in mix["steps"] if not s["warmup"]]
    assert {s["rate"] for s in measured} == {25.0, 50.0}
    # the realistic mix reached every endpoint, and the API's /metrics gave per-stage figures
    assert {"home", "similar", "event"} <= set(mix["totals"]["by_name"])
    assert "handler" in figures["headline"]["mix"]["server_stages_at_50"]
    assert "| bare" in (folder / "results.md").read_text()
    assert all(s["cpu"]["cpu_ms_per_request"] > 0 for s in measured)


@pytest.mark.redis
@pytest.mark.cassandra
@pytest.mark.kafka
@pytest.mark.timeout(360)  # about 90 s on a quiet 2-core machine
def test_vegeta_drives_the_same_steps_and_the_floor_beside_the_full_path(tmp_path: Path) -> None:
    # one measured step per target (3 s at 50 req/s) after a 2 s warm-up
    figures, folder = bench_cli(
        tmp_path / "home", "online", "--quick", "--targets", "bare,full,floor",
        "--generator", "vegeta", "--start-rate", "50",
    )  # fmt: skip
    report = (folder / "results.md").read_text()
    # every answer, the floor's too, was checked as locust checks them: shape, k distinct
    # items, none already seen
    assert figures["failed_requests"] == 0, report
    headline = figures["headline"]
    assert list(headline) == ["bare", "full", "floor"]
    for name, target in headline.items():
        assert target["generator"] == "vegeta"
        assert target["at_50"]["failures"] == 0, name
        assert target["cpu_ms_per_request"] > 0, (name, target["cpu_basis"])
    assert headline["full"]["impressions"] == "on"
    rates = (headline["full"]["max_rate"], headline["bare"]["max_rate"])
    ratio = figures["capacity_ratio"]
    assert ratio == (None if None in rates else round(rates[0] / rates[1], 4))
    full = json.loads((folder / "results.json").read_text())["targets"]["full"]
    step = next(s for s in full["steps"] if not s["warmup"])
    assert step["rate"] == 50.0
    # vegeta's own count of the window agrees with the checked answers
    assert step["vegeta"]["requests"] == step["all"]["count"] > 0
    assert step["vegeta"]["success_ratio"] == 1.0
    assert "handler" in step["stages"]
    # the floor: the full path's external calls only, its CPU beside the full path's
    floor = headline["floor"]
    assert floor["label"] == "floor: the external calls only"
    assert floor["requests"] > 0
    assert floor["impressions"] == "off"
    floor_ratio = figures["floor_ratio"]
    assert floor_ratio is not None and floor_ratio > 0
    expected = round(headline["full"]["cpu_ms_per_request"] / floor["cpu_ms_per_request"], 4)
    assert floor_ratio == expected
    assert "floor: the external calls only (floor)" in report
    assert "Floor ratio" in report
