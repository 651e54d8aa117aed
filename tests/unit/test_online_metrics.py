"""The API's metrics: the bundle gauges, the warm-up's metrics that record nothing, and
several worker processes whose /metrics adds up (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from online.metrics import MULTIPROC_ENV, OnlineMetrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_set_bundle_keeps_one_version_and_its_creation_time() -> None:
    metrics = OnlineMetrics()
    metrics.set_bundle("v1", 1_000.0)
    metrics.set_bundle("v2", 2_000.0)
    got = samples(metrics.exposition())
    assert got[("recsys_online_bundle", (("version", "v2"),))] == 1
    assert ("recsys_online_bundle", (("version", "v1"),)) not in got
    assert got[("recsys_online_bundle_created_timestamp_seconds", ())] == 2_000.0


def test_metrics_that_do_not_record_count_nothing() -> None:
    metrics = OnlineMetrics(record=False)
    metrics.child(metrics.stage_seconds, "rank").observe(0.01)
    metrics.child(metrics.candidates, "fresh").inc(3)
    value = metrics.registry.get_sample_value
    assert value("recsys_online_stage_seconds_count", {"stage": "rank"}) is None
    assert value("recsys_online_candidates_total", {"source": "fresh"}) is None


# One worker process: counts its share of requests, serves a bundle, exits (closed or not).
_WORKER = """
import sys
from online.metrics import OnlineMetrics
requests, version, created, close = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
m = OnlineMetrics()
for _ in range(requests):
    m.child(m.request_seconds, "control").observe(0.01)
m.impressions_dropped.inc()
m.set_bundle(version, created)
if close == "close":
    m.close()
"""


def run_worker(folder: Path, requests: int, version: str, created: float, close: bool) -> None:
    env = {**os.environ, MULTIPROC_ENV: str(folder)}
    argv = [sys.executable, "-c", _WORKER, str(requests), version, str(created)]
    subprocess.run([*argv, "close" if close else "stay"], env=env, check=True, timeout=60)


def test_two_workers_add_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_worker(tmp_path, 3, "old", 1_000.0, close=False)
    run_worker(tmp_path, 4, "new", 2_000.0, close=False)
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    got = samples(OnlineMetrics().exposition())
    assert got[("recsys_online_request_seconds_count", (("arm", "control"),))] == 7
    assert got[("recsys_online_impressions_dropped_total", ())] == 2
    # Mid-swap, each worker's bundle is 1 and the age is the oldest one's.
    assert got[("recsys_online_bundle", (("version", "old"),))] == 1
    assert got[("recsys_online_bundle", (("version", "new"),))] == 1
    assert got[("recsys_online_bundle_created_timestamp_seconds", ())] == 1_000.0


def test_a_closed_worker_leaves_its_counts_but_not_its_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_worker(tmp_path, 3, "old", 1_000.0, close=True)
    run_worker(tmp_path, 4, "new", 2_000.0, close=False)
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    got = samples(OnlineMetrics().exposition())
    assert got[("recsys_online_request_seconds_count", (("arm", "control"),))] == 7
    assert ("recsys_online_bundle", (("version", "old"),)) not in got
    assert got[("recsys_online_bundle_created_timestamp_seconds", ())] == 2_000.0


def test_one_process_without_the_folder_exports_its_own_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    metrics = OnlineMetrics()
    assert metrics.multiprocess_dir is None
    metrics.degraded.inc()
    assert samples(metrics.exposition())[("recsys_online_degraded_answers_total", ())] == 1
