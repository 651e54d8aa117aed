"""The retraining loop of ``recsys offline schedule``: retrain on the event lake when it is
due, gate the new bundle against the live one, promote it if it passes, then watch the
online SLO for a while and roll back on its own if the new bundle made answers slow or
degraded.

When a run is due:

- on the schedule (``every``: the last retraining run recorded in the registry's history
  is that old), so a restarted loop does not retrain at once;
- when the live bundle is older than ``max_age``;
- when Prometheus (optional) has a drift or stale-bundle alert firing.

A run is ``recsys offline run --no-promote --json`` in a child process (the Spark session
and the training memory go with it), on the event lake by default. The new bundle then goes
through :func:`offline.gate.promote_gated`. After a promotion the API is told to reload (when
an admin token is set) and :func:`watch` compares its ``/metrics`` over the watch with a
window taken just before: a p99 over the budget that was within it before, or a degraded
share that rose by more than ``degraded_rise``, rolls back (:func:`offline.publish.rollback`)
and reloads again. Every step is a decision in the registry's history.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from shared.errors import ConfigError
from shared.registry import ModelRegistry
from shared.settings import Settings

BY = "recsys offline schedule"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DRIFT_ALERTS = re.compile(r"^Recsys(Drift|.*Drift|BundleStale)")


def duration(text: str) -> float:
    """``90s``, ``15m``, ``6h``, ``1d`` (or bare seconds) in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise ConfigError(f"{text!r} is not a duration: use e.g. 90s, 15m, 6h, 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass
class Policy:
    every_s: float = 86400.0
    max_age_s: float | None = None
    prometheus: str | None = None
    metric: str = "ndcg@10"
    tolerance: float = 0.002
    watch_s: float = 300.0
    watch_interval_s: float = 10.0
    api: str = "http://127.0.0.1:8000"
    degraded_rise: float = 0.05
    min_requests: int = 20
    run_args: Sequence[str] = ("--dataset", "lake")


def due(settings: Settings, policy: Policy, now: float | None = None) -> str | None:
    """Why a retraining run is due now, or None."""
    now = time.time() if now is None else now
    registry = ModelRegistry(settings.registry_url)
    runs = [d for d in registry.decisions() if d.get("action") == "retrain"]
    if not runs:
        return "no retraining run recorded yet"
    if now - float(runs[-1]["at"]) >= policy.every_s:
        return f"the last run was {(now - float(runs[-1]['at'])) / 3600:.1f} h ago"
    live = registry.live()
    if policy.max_age_s is not None and live is not None:
        age = now - live.created_at
        if age >= policy.max_age_s:
            return f"the live bundle is {age / 3600:.1f} h old"
    if policy.prometheus:
        firing = firing_alerts(policy.prometheus)
        if firing:
            return f"alert firing: {', '.join(firing)}"
    return None


def firing_alerts(prometheus: str) -> list[str]:
    """Drift and stale-bundle alerts firing in Prometheus (none when it does not answer:
    the schedule and the age still apply)."""
    try:
        reply = httpx.get(f"{prometheus.rstrip('/')}/api/v1/alerts", timeout=5)
        return retrain_alerts(reply.json()["data"]["alerts"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return []


def retrain_alerts(alerts: list[dict[str, Any]]) -> list[str]:
    """The names of the firing alerts (Prometheus' ``/api/v1/alerts`` shape) that call for
    retraining: drift and a stale bundle."""
    return sorted(
        {
            name
            for a in alerts
            if a.get("state") == "firing"
            and DRIFT_ALERTS.match(name := str(a.get("labels", {}).get("alertname", "")))
        }
    )


def retrain(settings: Settings, policy: Policy, reason: str) -> dict[str, Any]:
    """One run of the offline job (not promoted); records it and returns its summary."""
    recsys = str(Path(sys.executable).with_name("recsys"))
    started = time.monotonic()
    done = subprocess.run(
        [recsys, "offline", "run", *policy.run_args, "--no-promote", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    registry = ModelRegistry(settings.registry_url)
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        registry.record({"action": "retrain-failed", "reason": f"{reason}; {error}", "by": BY})
        return {"ok": False, "error": error}
    out = orjson.loads(done.stdout)
    registry.record(
        {
            "action": "retrain",
            "version": out["version"],
            "reason": reason,
            "metrics": out.get("metrics", {}),
            "seconds": round(time.monotonic() - started, 1),
            "by": BY,
        }
    )
    return {"ok": True, **out}


@dataclass
class Window:
    """The API's figures over one stretch of the watch."""

    requests: float
    p99_ms: float | None
    degraded: float | None
    failed: str | None = None


def measure(api: str, seconds: float) -> Window:
    """Two scrapes of the API's ``/metrics``, ``seconds`` apart."""
    from recsys.monitor import compute, scrape

    with httpx.Client(timeout=10) as client:
        first = scrape(client, f"{api.rstrip('/')}/metrics")
        time.sleep(seconds)
        second = scrape(client, f"{api.rstrip('/')}/metrics")
    if isinstance(first, str) or isinstance(second, str):
        return Window(0, None, None, failed=first if isinstance(first, str) else str(second))
    figures = compute([(first, second)], [], seconds, time.time())
    requests = (figures.requests_per_s or 0.0) * seconds
    return Window(requests, figures.p99_latency_ms, figures.degraded_ratio)


def regressed(before: Window, after: Window, budget_ms: float, policy: Policy) -> str | None:
    """Why ``after`` is a regression from ``before``, or None (too few requests: None)."""
    if after.requests < policy.min_requests or after.p99_ms is None:
        return None
    if after.p99_ms > budget_ms and (before.p99_ms is None or before.p99_ms <= budget_ms):
        return f"p99 {after.p99_ms:.0f} ms over the {budget_ms:g} ms budget (was {before.p99_ms or 0:.0f} ms)"
    rise = (after.degraded or 0.0) - (before.degraded or 0.0)
    if rise > policy.degraded_rise:
        return (
            f"degraded answers {100 * (after.degraded or 0):.1f}% "
            f"(was {100 * (before.degraded or 0):.1f}%)"
        )
    return None


def reload_api(settings: Settings, api: str) -> str | None:
    """Ask the API to load the live bundle now; None when it did, else why not."""
    if settings.admin_token is None:
        return "no admin token: the API picks the bundle up within its reload interval"
    try:
        reply = httpx.post(
            f"{api.rstrip('/')}/v1/admin/reload",
            headers={"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"},
            timeout=120,
        )
    except httpx.HTTPError as err:
        return f"reload failed: {err}"
    return None if reply.status_code == 200 else f"reload answered {reply.status_code}"


@dataclass
class WatchResult:
    rolled_back: bool
    reason: str
    windows: list[Window] = field(default_factory=list)


def watch(
    settings: Settings,
    policy: Policy,
    version: str,
    before: Window,
    sleep: Callable[[float], None] = time.sleep,
) -> WatchResult:
    """Watch the API for ``policy.watch_s`` after ``version`` went live; roll back on a
    regression from ``before`` (the window taken just before the promotion)."""
    from offline.publish import rollback

    registry = ModelRegistry(settings.registry_url)
    windows: list[Window] = []
    deadline = time.monotonic() + policy.watch_s
    while time.monotonic() < deadline:
        window = measure(policy.api, min(policy.watch_interval_s, deadline - time.monotonic()))
        windows.append(window)
        why = regressed(before, window, settings.budget_ms, policy)
        if why is not None:
            info = rollback(settings)
            registry.record(
                {
                    "action": "rollback",
                    "version": info.version,
                    "live": version,
                    "reason": f"{version} after its promotion: {why}",
                    "by": BY,
                }
            )
            reload_api(settings, policy.api)
            return WatchResult(True, why, windows)
    return WatchResult(False, "no regression within the watch", windows)


def tick(settings: Settings, policy: Policy, force: bool = False) -> dict[str, Any]:
    """One pass of the loop: retrain if due, gate, promote, watch. Returns what happened."""
    from offline.gate import GateRefused, promote_gated

    reason = "asked for (--now)" if force else due(settings, policy)
    if reason is None:
        return {"retrained": False}
    run = retrain(settings, policy, reason)
    if not run["ok"]:
        return {"retrained": False, "error": run["error"], "reason": reason}
    version = str(run["version"])
    before = measure(policy.api, min(policy.watch_interval_s, 10.0)) if policy.watch_s else None
    try:
        verdict = promote_gated(
            settings, version, metric=policy.metric, tolerance=policy.tolerance, by=BY
        )
    except GateRefused as err:
        return {"retrained": True, "version": version, "promoted": False, "reason": str(err)}
    out: dict[str, Any] = {"retrained": True, "version": version, "promoted": True}
    out["gate"] = verdict.reason
    out["reload"] = reload_api(settings, policy.api) or "reloaded"
    if before is not None and before.failed is None:
        result = watch(settings, policy, version, before)
        out["rolled_back"], out["watch"] = result.rolled_back, result.reason
    elif before is not None:
        out["watch"] = f"not watched: the API did not answer ({before.failed})"
    return out
