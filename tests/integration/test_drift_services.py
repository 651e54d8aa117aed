"""Drift on the real services: a nearline worker on Kafka, Redis and Cassandra exports its
drift metrics from the live window. A stream drawn like the training data stays under the
alert threshold (PSI 0.2 on every feature the stream can move); the same stream switched to
a different popularity law (the catalogue's tail) passes it within the window."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nearline.embeddings import LiveItemVectors
from nearline.lake import LakeWriter
from nearline.metrics import NearlineMetrics
from nearline.worker import Worker, WorkerConfig
from shared.registry import ModelRegistry
from shared.storage.factory import open_event_log, open_history, open_user_state
from tests.conftest import KAFKA_URL, REDIS_URL, unique
from tests.unit.test_nearline_drift import ITEMS, events, publish, scrape, training_items

pytestmark = [pytest.mark.redis, pytest.mark.cassandra, pytest.mark.kafka, pytest.mark.timeout(300)]
THRESHOLD = 0.2  # RecsysInputDrift in deploy/prometheus/rules.yml


def test_a_popularity_shift_passes_the_alert_threshold_and_a_calm_stream_does_not(
    tmp_path: Path, cassandra_keyspace_url: str
) -> None:
    publish(tmp_path / "models", with_profile=True)
    log = open_event_log(f"{KAFKA_URL.rstrip('/')}/{unique('drift')}")
    log.init_schema(partitions=2)
    history = open_history(cassandra_keyspace_url)
    history.init_schema()
    metrics = NearlineMetrics()
    worker = Worker(
        log,
        open_user_state(f"{REDIS_URL}?namespace={unique('drift')}", ttl_s=3600, recent_cap=50),
        history,
        LakeWriter(tmp_path / "lake", log.topic),
        vectors=LiveItemVectors(ModelRegistry(f"file://{tmp_path}/models")),
        config=WorkerConfig(group_id=unique("drift")),
        metrics=metrics,
    )
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    rng = np.random.default_rng(5)

    def stream(items: list[str], start: int) -> dict[str, float]:
        batch = events(items, rng.integers(0, 600, len(items)), start=start)
        log.append([(e.user_id, e.to_json()) for e in batch])
        deadline = time.monotonic() + 60
        while worker.stats.records < start + len(batch) and time.monotonic() < deadline:
            time.sleep(0.1)
        return scrape(metrics)

    try:
        calm = stream([ITEMS[i] for i in training_items(rng, 5000)], 0)
        shifted = stream([ITEMS[int(i)] for i in rng.integers(70, 100, 5000)], 5000)
    finally:
        stop.set()
        runner.join(60)
        log.close()
        history.close()
    assert calm["recsys_nearline_drift_window_events"] == 5000
    assert calm["recsys_nearline_drift_psi:popularity"] < THRESHOLD
    assert calm["recsys_nearline_drift_psi:unseen_items"] < THRESHOLD
    # The window holds the last 5,000 events (the profile's count): all of the new law.
    assert shifted["recsys_nearline_drift_window_events"] == 5000
    assert shifted["recsys_nearline_drift_psi:popularity"] > THRESHOLD
    assert (
        shifted["recsys_nearline_drift_js:popularity"] > calm["recsys_nearline_drift_js:popularity"]
    )
