"""The retraining loop's decisions that need no service: durations, when a run is due, which
alerts call for one, and what counts as a regression after a promotion."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.retrain import Policy, Window, due, duration, regressed, retrain_alerts
from shared.errors import ConfigError
from shared.registry import ModelRegistry
from shared.settings import Settings


def test_durations() -> None:
    assert [duration(t) for t in ("90s", "15m", "6h", "1d", "2.5h", "30")] == [
        90.0,
        900.0,
        21600.0,
        86400.0,
        9000.0,
        30.0,
    ]
    with pytest.raises(ConfigError, match="'soon' is not a duration"):
        duration("soon")


def test_due_on_the_schedule_and_on_the_bundle_age(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    registry = ModelRegistry(settings.registry_url)
    policy = Policy(every_s=3600, max_age_s=7200)
    assert due(settings, policy) == "no retraining run recorded yet"
    ran = registry.record({"action": "retrain", "version": "v1"})["at"]
    assert due(settings, policy, now=ran + 60) is None
    assert due(settings, policy, now=ran + 3700) == "the last run was 1.0 h ago"
    with registry.create(None, "fp", {}) as bundle:
        version = bundle.version
    registry.promote(version)
    created = registry.get(version).created_at
    assert due(settings, Policy(every_s=1e9, max_age_s=7200), now=created + 60) is None
    assert due(settings, Policy(every_s=1e9, max_age_s=7200), now=created + 10800) == (
        "the live bundle is 3.0 h old"
    )


def test_drift_and_stale_alerts_call_for_a_run_others_do_not() -> None:
    alerts = [
        {"labels": {"alertname": "RecsysInputDrift"}, "state": "firing"},
        {"labels": {"alertname": "RecsysScoreDrift"}, "state": "firing"},
        {"labels": {"alertname": "RecsysBundleStale"}, "state": "firing"},
        {"labels": {"alertname": "RecsysInputDrift", "instance": "b"}, "state": "pending"},
        {"labels": {"alertname": "RecsysErrors"}, "state": "firing"},
    ]
    assert retrain_alerts(alerts) == [
        "RecsysBundleStale",
        "RecsysInputDrift",
        "RecsysScoreDrift",
    ]
    assert retrain_alerts([]) == []


def test_regressions_after_a_promotion() -> None:
    policy = Policy(min_requests=20, degraded_rise=0.05)
    calm = Window(requests=300, p99_ms=12.0, degraded=0.01)
    assert regressed(calm, Window(300, 95.0, 0.01), 80.0, policy) == (
        "p99 95 ms over the 80 ms budget (was 12 ms)"
    )
    assert regressed(calm, Window(300, 40.0, 0.20), 80.0, policy) == (
        "degraded answers 20.0% (was 1.0%)"
    )
    assert regressed(calm, Window(300, 40.0, 0.04), 80.0, policy) is None
    assert regressed(calm, Window(5, 500.0, 1.0), 80.0, policy) is None  # too few to judge
    already = Window(300, 120.0, 0.01)  # over budget before: not this bundle's doing
    assert regressed(already, Window(300, 130.0, 0.01), 80.0, policy) is None
