"""The nearline worker's drift window against the live bundle's training profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prometheus_client import generate_latest

from nearline.drift import LiveDrift
from nearline.embeddings import LiveItemVectors
from nearline.lake import LakeWriter
from nearline.metrics import NearlineMetrics
from nearline.worker import Worker, WorkerConfig
from shared import drift
from shared.bundle import ITEM_IDS, ITEM_VECTORS, Embeddings, write_embeddings
from shared.events import Event, EventType
from shared.registry import ModelRegistry
from shared.storage.factory import open_event_log, open_history, open_user_state

ITEMS = [f"i{i}" for i in range(100)]
POPULARITY = np.arange(100, 0, -1)  # i0 the most popular


def training_items(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(100, size=n, p=POPULARITY / POPULARITY.sum())


def publish(root: Path, with_profile: bool) -> str:
    rng = np.random.default_rng(0)
    registry = ModelRegistry(f"file://{root}")
    with registry.create(None, "test", {}) as bundle:
        vectors = rng.normal(size=(100, 4)).astype(np.float32)
        write_embeddings(bundle.path, ITEM_IDS, ITEM_VECTORS, Embeddings(ITEMS, vectors))
        if with_profile:
            buckets = drift.popularity_buckets(POPULARITY)
            items = training_items(rng, 5000)
            users = rng.integers(0, 1000, size=5000)
            types = {"click": 3000, "impression": 2000}
            profile = drift.training_profile(items, users, buckets, event_types=types, window=5000)
            drift.write_profile(bundle.path, profile, buckets)
    registry.promote(bundle.version)
    return bundle.version


def events(items: list[str], users: np.ndarray, start: int = 0) -> list[Event]:
    return [
        Event(
            event_id=f"e{start + n}",
            user_id=f"u{u}",
            item_id=item,
            type=EventType.CLICK,
            timestamp=1_700_000_000.0 + n,
        )
        for n, (item, u) in enumerate(zip(items, users.tolist(), strict=True))
    ]


def run_worker(tmp_path: Path, batch: list[Event], metrics: NearlineMetrics) -> None:
    log = open_event_log(f"sqlite:///{tmp_path}/log.db")
    log.init_schema(partitions=2)
    log.append([(e.user_id, e.to_json()) for e in batch])
    worker = Worker(
        log,
        open_user_state("memory://state", ttl_s=3600, recent_cap=50),
        open_history("memory://history"),
        LakeWriter(tmp_path / "lake", log.topic),
        vectors=LiveItemVectors(ModelRegistry(f"file://{tmp_path}/models")),
        config=WorkerConfig(group_id="g"),
        metrics=metrics,
    )
    worker.run(max_records=len(batch))
    log.close()


def scrape(metrics: NearlineMetrics) -> dict[str, float]:
    out = {}
    for family in metrics.registry.collect():
        if family.name.startswith("recsys_nearline_drift"):
            for s in family.samples:
                out[s.name + "".join(f":{v}" for v in s.labels.values())] = s.value
    return out


def test_the_worker_exports_drift_that_moves_with_the_traffic(tmp_path: Path) -> None:
    publish(tmp_path / "models", with_profile=True)
    rng = np.random.default_rng(1)
    like_training = [ITEMS[i] for i in training_items(rng, 3000)]
    metrics = NearlineMetrics()
    run_worker(tmp_path, events(like_training, rng.integers(0, 600, 3000)), metrics)
    calm = scrape(metrics)
    assert calm["recsys_nearline_drift_window_events"] == 3000
    assert calm["recsys_nearline_drift_psi:popularity"] < 0.05
    assert calm["recsys_nearline_drift_js:popularity"] < 0.01
    # Every event a click where training saw 40% impressions: the type shares moved.
    assert calm["recsys_nearline_drift_psi:event_type"] > 0.2
    assert set(k.split(":")[1] for k in calm if ":" in k) == set(drift.EVENT_FEATURES)

    # Then the tail of the catalogue and items the bundle never saw.
    live = LiveDrift(min_events=100)
    registry = ModelRegistry(f"file://{tmp_path}/models")
    reference = drift.read_reference(registry.path(registry.list()[0].version), "v", ITEMS)
    assert reference is not None
    tail = [ITEMS[int(i)] for i in rng.integers(80, 100, 2000)] + ["new"] * 500
    live.add(reference, events(tail, rng.integers(0, 600, 2500)))
    moved = live.divergences()
    assert moved["popularity"][0] > 1.0 and moved["unseen_items"][0] > 1.0
    assert moved["popularity"][1] > calm["recsys_nearline_drift_js:popularity"]


def test_without_a_profile_drift_is_absent_not_an_error(tmp_path: Path) -> None:
    publish(tmp_path / "models", with_profile=False)
    rng = np.random.default_rng(2)
    metrics = NearlineMetrics()
    run_worker(tmp_path, events([ITEMS[0]] * 1500, rng.integers(0, 50, 1500)), metrics)
    assert scrape(metrics) == {}
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE recsys_nearline_drift_psi gauge" in text
    assert "recsys_nearline_drift_psi{" not in text
    assert "recsys_nearline_events_total" in text  # the rest is exported as before


def test_a_small_window_or_a_new_bundle_compares_nothing(tmp_path: Path) -> None:
    publish(tmp_path / "models", with_profile=True)
    registry = ModelRegistry(f"file://{tmp_path}/models")
    path = registry.path(registry.list()[0].version)
    first = drift.read_reference(path, "v1", ITEMS)
    second = drift.read_reference(path, "v2", ITEMS)
    assert first is not None and second is not None
    live = LiveDrift()
    rng = np.random.default_rng(3)
    live.add(first, events([ITEMS[0]] * 999, rng.integers(0, 50, 999)))
    assert live.divergences() == {}  # under MIN_EVENTS
    live.add(first, events([ITEMS[0]] * 1, rng.integers(0, 50, 1)))
    assert set(live.divergences()) == set(drift.EVENT_FEATURES)
    live.add(second, events([ITEMS[0]] * 10, rng.integers(0, 50, 10)))
    assert live.window is not None and live.window.size == 10  # a new bundle: a new window
    live.add(None, [])
    assert live.window is None and live.divergences() == {}
