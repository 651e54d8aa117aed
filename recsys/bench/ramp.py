"""Pure logic of the stepped load ramp: the schedule, per-step figures, the verdict.

Shared by the locustfile (which runs in locust's gevent-patched process) and the CLI (which
never imports locust), so nothing here imports locust or does I/O.

A step offers ``rate`` requests/s with ``users`` simulated visitors, each waiting an
exponentially distributed think time of mean ``think_s`` between requests: together they
send a Poisson-like stream of about ``users / think_s`` requests/s while answers stay far
faster than the think time. Each step's first ``settle_s`` (visitors being started) are not
measured; the next ``hold_s`` are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)  # vegeta's own report gives p90


@dataclass(frozen=True)
class Step:
    index: int
    rate: float  # offered requests/s
    users: int  # simulated visitors
    start_s: float  # since the test began
    settle_s: float  # not measured (visitors starting)
    hold_s: float  # measured
    warmup: bool = False  # measured but never judged (caches, first connections)

    @property
    def window(self) -> tuple[float, float]:
        return self.start_s + self.settle_s, self.end_s

    @property
    def end_s(self) -> float:
        return self.start_s + self.settle_s + self.hold_s

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def doubling_rates(start: float, max_rate: float, include: Iterable[float] = ()) -> list[float]:
    """``start, 2 start, 4 start ...`` up to ``max_rate``, plus the rates in ``include``."""
    if start <= 0 or max_rate < start:
        raise ValueError(f"rates need 0 < start <= max_rate, got {start} and {max_rate}")
    rates = {float(r) for r in include if 0 < r <= max_rate}
    rate = float(start)
    while rate <= max_rate:
        rates.add(rate)
        rate *= 2
    return sorted(rates)


def schedule(
    rates: Sequence[float],
    *,
    think_s: float,
    settle_s: float,
    hold_s: float,
    warmup_rate: float = 0.0,
    warmup_s: float = 0.0,
) -> list[Step]:
    """Consecutive steps at ``rates`` (ascending), after an optional warm-up step."""
    steps: list[Step] = []
    start = 0.0
    plan = [(warmup_rate, 0.0, warmup_s, True)] if warmup_rate > 0 and warmup_s > 0 else []
    plan += [(float(r), settle_s, hold_s, False) for r in rates]
    for rate, settle, hold, warmup in plan:
        users = users_for(rate, think_s)
        steps.append(Step(len(steps), rate, users, start, settle, hold, warmup))
        start += settle + hold
    return steps


def users_for(rate: float, think_s: float) -> int:
    """Visitors that offer ``rate`` requests/s with a mean think time of ``think_s``."""
    return max(1, math.ceil(rate * think_s))


def step_at(steps: Sequence[Step], t: float) -> Step | None:
    """The step running at ``t`` seconds, None once the schedule is over."""
    for step in steps:
        if step.start_s <= t < step.end_s:
            return step
    return None


def summarise(latencies_ms: Sequence[float]) -> dict[str, Any]:
    """Count, mean, p50/p90/p95/p99 and max of a list of latencies (NaN-free; empty -> None)."""
    if not latencies_ms:
        return {
            "count": 0,
            "mean_ms": None,
            "max_ms": None,
            **{f"p{q}_ms": None for q in PERCENTILES},
        }
    values = np.asarray(latencies_ms, dtype=np.float64)
    out: dict[str, Any] = {"count": len(values), "mean_ms": round(float(values.mean()), 3)}
    for q in PERCENTILES:
        out[f"p{q}_ms"] = round(float(np.percentile(values, q)), 3)
    out["max_ms"] = round(float(values.max()), 3)
    return out


@dataclass
class _Bucket:
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    degraded: int = 0


class StepRecorder:
    """Latencies and failures per step and endpoint, by the time each request was sent."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self._buckets: dict[tuple[int, str], _Bucket] = {}

    def _bucket(self, sent_s: float, name: str) -> _Bucket | None:
        step = step_at(self.steps, sent_s)
        if step is None:
            return None
        low, high = step.window
        if not low <= sent_s < high:
            return None  # sent while visitors were starting
        return self._buckets.setdefault((step.index, name), _Bucket())

    def request(self, name: str, sent_s: float, latency_ms: float, failure: str | None) -> None:
        bucket = self._bucket(sent_s, name)
        if bucket is None:
            return
        bucket.latencies.append(latency_ms)
        if failure is not None:
            reason = failure.splitlines()[0][:120] if failure else "failed"
            bucket.failures[reason] = bucket.failures.get(reason, 0) + 1

    def degraded(self, name: str, sent_s: float) -> None:
        bucket = self._bucket(sent_s, name)
        if bucket is not None:
            bucket.degraded += 1

    def result(self, step: Step, verdict: str, budget_ms: float) -> dict[str, Any]:
        """The step's figures: per endpoint, all together, and whether it kept the budget."""
        mine = {name: b for (index, name), b in self._buckets.items() if index == step.index}
        endpoints = {name: _figures(b, step.hold_s) for name, b in sorted(mine.items())}
        together = _Bucket()
        for b in mine.values():
            together.latencies += b.latencies
            together.degraded += b.degraded
            for reason, n in b.failures.items():
                together.failures[reason] = together.failures.get(reason, 0) + n
        result = {
            **step.to_json(),
            "endpoints": endpoints,
            "all": _figures(together, step.hold_s),
        }
        result["passed"] = passed(result, verdict, budget_ms)
        return result


def _figures(bucket: _Bucket, seconds: float) -> dict[str, Any]:
    return {
        **summarise(bucket.latencies),
        "achieved_rate": round(len(bucket.latencies) / seconds, 2) if seconds > 0 else 0.0,
        "failures": sum(bucket.failures.values()),
        "failure_reasons": dict(bucket.failures),
        "degraded": bucket.degraded,
    }


def passed(result: Mapping[str, Any], verdict: str, budget_ms: float) -> bool:
    """No request failed, the judged endpoint answered, and its p99 is under the budget."""
    judged = result["endpoints"].get(verdict)
    if judged is None or not judged["count"] or result["all"]["failures"]:
        return False
    p99: float = judged["p99_ms"]
    return p99 < budget_ms


def highest_passing(results: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The last step of the unbroken run of passing steps from the lowest rate (a pass above a
    failed step is noise, not capacity); warm-up steps are ignored."""
    best = None
    for result in sorted((r for r in results if not r["warmup"]), key=lambda r: r["rate"]):
        if not result["passed"]:
            break
        best = result
    return best


def should_stop(results: Sequence[Mapping[str, Any]], must_reach: float) -> bool:
    """Stop the ramp after a failed step once every rate the report needs was measured."""
    judged = [r for r in results if not r["warmup"]]
    if not judged or judged[-1]["passed"]:
        return False
    rate: float = judged[-1]["rate"]
    return rate >= must_reach
