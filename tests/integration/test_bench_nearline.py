"""`recsys bench nearline --json` on a small run: the CI smoke test of the nearline benchmark.

Real Kafka, Redis and Cassandra; a 2,000-event throughput run, then 200 events/s with half a
second of settling before one measured second. It checks the figures and the report, that
only the measured probes are timed and every one of them was seen; nothing about timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import bench_cli


@pytest.mark.redis
@pytest.mark.cassandra
@pytest.mark.kafka
@pytest.mark.timeout(300)  # about 40 s on a quiet 2-core machine
def test_small_run_reports_throughput_freshness_and_fresh_candidates(tmp_path: Path) -> None:
    figures, folder = bench_cli(
        tmp_path / "home",
        "nearline",
        *("--events", "2000", "--rates", "200", "--seconds", "1", "--settle-s", "0.5"),
    )
    throughput = figures["throughput"]
    assert (throughput["events"], throughput["applied"]) == (2000, 2000)
    assert throughput["events_per_second"] > 0 and throughput["group_join_seconds"] > 0
    [rate] = figures["freshness"]
    assert (rate["target_rate"], rate["settle_seconds"]) == (200.0, 0.5)
    # 20 ms ticks with a probe each: the settling half second sends 25 that are not timed.
    assert rate["settle_probes"] == 25
    assert rate["probes"] == rate["probes_seen"] == 50
    assert 0 < rate["freshness_ms_p50"] <= rate["freshness_ms_p99"]
    fresh = figures["fresh_candidates"]
    assert 0 < fresh["online_ms_p50"] <= fresh["online_ms_p99"]
    report = (folder / "results.md").read_text()
    assert "| 200/s |" in report and "after 0.5 s" in report
