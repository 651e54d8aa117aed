"""After a promotion the retraining loop watches the online SLO and rolls back on its own: a
bundle that makes the API slow (a ranker far too wide to serve in the budget) goes live
under traffic, the watch sees the p99 pass the budget and restores the previous bundle,
and no request fails during either swap. The API is ``recsys online serve`` on the real
Redis, Cassandra and Kafka (a namespace, keyspace and topic of the test's own)."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pytest

from offline.gate import promote_gated
from recsys.bench.fault_load import ITEMS, Load, World
from recsys.bench.online_data import synthetic_bundle
from recsys.retrain import Policy, measure, reload_api, watch
from shared.registry import ModelRegistry
from tests.conftest import CASSANDRA_URL, KAFKA_URL, REDIS_URL

pytestmark = [pytest.mark.redis, pytest.mark.cassandra, pytest.mark.kafka, pytest.mark.timeout(600)]


def test_a_bundle_that_slows_the_api_is_rolled_back(tmp_path: Path) -> None:
    world = World.on(
        tmp_path,
        user_state_url=f"{REDIS_URL}?namespace=watch_{secrets.token_hex(3)}",
        cassandra_url=CASSANDRA_URL,
        kafka_url=KAFKA_URL,
        admin=True,
    )
    settings = world.settings
    try:
        world.prepare()
        registry = ModelRegistry(settings.registry_url)
        good = registry.live()
        assert good is not None
        # Two 8,192 x 8,192 layers: about 190 ms of ranking per answer on our 2-core machine
        # (one layer: 95 ms, too close to the 80 ms budget on a quiet machine).
        slow = synthetic_bundle(
            registry, ITEMS, 16, np.random.default_rng(9), hidden=(8192, 8192, 8192)
        )
        with world.api() as url:
            policy = Policy(api=url, watch_s=60, watch_interval_s=4, min_requests=5)
            load = Load(url, rate=20)
            load.start()
            try:
                before = measure(url, 4)
                assert before.p99_ms is not None and before.p99_ms < settings.budget_ms, before
                promote_gated(settings, slow, force=True, by="test")  # past the gate on purpose
                assert reload_api(settings, url) is None
                result = watch(settings, policy, slow, before)
                load.phase = "after"
                measure(url, 2)  # answers from the restored bundle
            finally:
                load.stop()
        assert result.rolled_back, result
        assert "over the 80 ms budget" in result.reason, result
        assert registry.live().version == good.version  # type: ignore[union-attr]
        failed = [r for r in load.reads if r.status != 200]
        assert not failed and load.reads, failed[:3]
        assert {r.bundle for r in load.reads} == {good.version, slow}
        assert {r.bundle for r in load.reads if r.phase == "after"} == {good.version}
        assert all(a.status == 202 for _, a in load.posted)
        last = registry.decisions()[-1]
        assert (last["action"], last["version"], last["live"]) == ("rollback", good.version, slow)
    finally:
        world.drop()
