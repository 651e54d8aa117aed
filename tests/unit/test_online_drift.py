"""Score drift in the API: a window of the ranker scores served, compared at scrape time."""

from __future__ import annotations

import timeit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from online.metrics import OnlineMetrics
from shared import drift
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage.factory import open_candidates, open_event_log, open_user_state
from tests.unit.test_online_api import build
from tests.unit.test_online_helpers import candidate_rows, make_bundle, publish_candidates


def drift_samples(text: bytes) -> dict[str, float]:
    return {
        s.name + "".join(f":{v}" for v in s.labels.values()): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if s.name.startswith("recsys_online_drift")
    }


def profile(scores: np.ndarray) -> drift.Profile:
    buckets = drift.popularity_buckets(np.arange(10))
    return drift.training_profile(np.arange(10), np.arange(10), buckets, scores=scores)


def test_scores_like_validation_are_calm_and_shifted_ones_drift() -> None:
    rng = np.random.default_rng(0)
    metrics = OnlineMetrics()
    metrics.set_drift(profile(rng.normal(size=5000)))
    for _ in range(100):
        metrics.record_scores(rng.normal(size=20).astype(np.float32), list(range(10)))
    calm = drift_samples(metrics.exposition())
    assert calm["recsys_online_drift_window_scores"] == 1000
    assert calm["recsys_online_drift_psi:score"] < 0.1
    metrics.set_drift(metrics.drift_profile)  # the same bundle again: a new window
    for _ in range(100):
        metrics.record_scores(rng.normal(1.0, size=10).astype(np.float32), list(range(10)))
    moved = drift_samples(metrics.exposition())
    assert moved["recsys_online_drift_psi:score"] > 0.5
    assert moved["recsys_online_drift_js:score"] > calm["recsys_online_drift_js:score"]


def test_no_profile_or_too_few_scores_export_no_divergence() -> None:
    metrics = OnlineMetrics()
    metrics.record_scores(np.zeros(10, np.float32), list(range(10)))
    assert drift_samples(metrics.exposition()) == {}  # no profile: absent, not an error
    metrics.set_drift(profile(np.random.default_rng(1).normal(size=1000)))
    metrics.record_scores(np.zeros(10, np.float32), list(range(10)))
    assert drift_samples(metrics.exposition()) == {"recsys_online_drift_window_scores": 10}
    silent = OnlineMetrics(record=False)  # the warm-up's
    silent.set_drift(metrics.drift_profile)
    silent.record_scores(np.zeros(10, np.float32), list(range(10)))
    assert silent.scores.size == 0


def test_recording_an_answer_costs_a_few_microseconds() -> None:
    metrics = OnlineMetrics()
    metrics.set_drift(profile(np.random.default_rng(2).normal(size=1000)))
    scores = np.random.default_rng(3).normal(size=60).astype(np.float32)
    chosen = list(range(0, 60, 6))
    runs = timeit.repeat(lambda: metrics.record_scores(scores, chosen), number=10_000, repeat=5)
    per_call_us = min(runs) / 10_000 * 1e6
    # Measured about 2 us here; the bound leaves room for a busy machine.
    assert per_call_us < 20, per_call_us


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path, registry_url=f"file://{tmp_path}/models")
    registry = ModelRegistry(settings.registry_url)
    scores = np.random.default_rng(4).normal(size=2000) if request.param else None
    version = make_bundle(registry, scores=scores)
    registry.promote(version)
    stores: tuple[Any, Any, Any] = (
        open_user_state("memory://", ttl_s=3600, recent_cap=50),
        open_candidates("memory://"),
        open_event_log("memory://"),
    )
    for store in stores:
        store.init_schema()
    publish_candidates(stores[1], version, candidate_rows())
    with TestClient(build(settings, stores)) as client:
        yield client
    for store in stores:
        store.close()


@pytest.mark.parametrize("served", [True], indirect=True)
def test_the_api_exports_the_drift_of_what_it_served(served: TestClient) -> None:
    for n in range(60):
        assert served.get(f"/v1/users/u{n % 10}/recommendations", params={"k": 10}).is_success
    got = drift_samples(served.get("/metrics").content)
    assert got["recsys_online_drift_window_scores"] == 600
    assert got["recsys_online_drift_psi:score"] >= 0.0
    assert 0.0 <= got["recsys_online_drift_js:score"] <= 1.0


@pytest.mark.parametrize("served", [False], indirect=True)
def test_a_bundle_without_a_profile_serves_without_drift(served: TestClient) -> None:
    for n in range(60):
        assert served.get(f"/v1/users/u{n % 10}/recommendations", params={"k": 10}).is_success
    reply = served.get("/metrics")
    assert reply.status_code == 200
    assert drift_samples(reply.content) == {}
    assert b"recsys_online_request_seconds_count" in reply.content
