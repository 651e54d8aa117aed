"""``recsys plan``: a capacity plan from the benchmarks' measured figures.

Every figure of the plan is a formula over the traffic asked for and one measured input;
each input names the benchmark result it comes from (docs page, date, command). Inputs
measured on our shared 2-core machine are taken as they are; anything beyond what was
measured (more users, more data, other hardware) is an extrapolation, and the plan marks it
so. Assumptions that are not measurements (target CPU use, headroom, replication factor,
retention, disk per node) are options with their defaults shown.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

from shared.storage.user_state import DEDUPE_WINDOW


@dataclass(frozen=True)
class Measured:
    value: float
    unit: str
    source: str


# What the benchmarks measured (docs/benchmarks/*, docs/online-cpu.md).
API_CPU_MS = Measured(
    2.96,
    "ms CPU per answer",
    "docs/online-cpu.md#before-and-after: cpu_per_request.py, recsys online serve on real "
    "Redis, Cassandra and Kafka, ML-100K bundle, impressions on; median of 3, 2026-12-06",
)
NEARLINE_FRESH_EVENTS_S = Measured(
    5000.0,
    "events/s per worker with freshness p99 <= 100 ms",
    "docs/benchmarks/nearline.md#runs-of-2026-12-06: freshness p99 49.5-62.3 ms at 5,000 "
    "events/s (the highest rate the benchmark offers); recsys bench nearline, 2026-12-06",
)
NEARLINE_MAX_EVENTS_S = Measured(
    14197.0,
    "events/s per worker, throughput",
    "docs/benchmarks/nearline.md#runs-of-2026-12-06: 15,630 / 11,212 / 14,197 events/s, "
    "median; recsys bench nearline, 2026-12-06",
)
# recsys bench sizes, 2026-12-06 (docs/benchmarks/sizes.md): one user's three keys.
REDIS_BYTES_PER_USER = {10: 1896.0, 100: 5968.0, 1000: 134864.0, 8192: 981242.0}
REDIS_SOURCE = (
    "docs/benchmarks/sizes.md: recsys bench sizes, MEMORY USAGE of a user's state hash, "
    "recent set and dedupe set at 10/100/1,000/8,192 events (64-float session), 2026-12-06"
)
CASSANDRA_LIST_BYTES = Measured(
    10550.0,
    "bytes on disk per list of 200 candidates with features, one replica",
    "docs/benchmarks/sizes.md: recsys bench sizes (1,000 lists, flushed, SSTable files), "
    "2026-12-06",
)
CASSANDRA_EVENT_BYTES = Measured(
    53.2,
    "bytes on disk per history event, one replica",
    "docs/benchmarks/sizes.md: recsys bench sizes (50,000 events, flushed), 2026-12-06",
)
OFFLINE_CPU_S_PER_M = Measured(
    726.6 / 20,
    "CPU seconds per million interactions (20M run)",
    "docs/benchmarks/offline-scale.md#measured: recsys bench offline, 20M interactions, "
    "726.6 CPU s (473.6 s wall on 2 cores), 2026-11-29",
)
MEASURED_INTERACTIONS_M = 20.0  # the largest offline run measured


@dataclass(frozen=True)
class Assumptions:
    cpu_target: float = 0.5  # share of a core each API core is planned to use
    cores_per_replica: int = 2
    nearline_headroom: float = 0.7  # share of a worker's measured rate planned
    active_share: float = 1.0  # users with fresh state in Redis (active within its TTL)
    ttl_s: float = 7 * 86400.0
    redis_overhead: float = 1.3  # allocator and fragmentation beyond MEMORY USAGE
    replication: int = 3  # Cassandra
    history_days: float = 90.0
    candidates_per_user: int = 200
    disk_per_node_gb: float = 1000.0
    disk_fill: float = 0.5  # Cassandra needs room to compact
    training_days: float = 90.0  # the event lake a retraining run reads


@dataclass(frozen=True)
class Line:
    part: str
    figure: str
    value: float
    unit: str
    formula: str
    source: str
    extrapolated: bool


def redis_bytes_per_user(events: float) -> float:
    """Interpolated between the measured points (linear in events); events past the last
    point are not remembered (the dedupe window), so the last point caps it."""
    points = sorted(REDIS_BYTES_PER_USER.items())
    events = min(max(events, points[0][0]), points[-1][0])
    for (n0, b0), (n1, b1) in itertools.pairwise(points):
        if events <= n1:
            return b0 + (b1 - b0) * (events - n0) / (n1 - n0)
    return points[-1][1]


def plan(
    *, users: float, items: float, rps: float, events_per_s: float, a: Assumptions
) -> list[Line]:
    lines: list[Line] = []

    def add(  # noqa: PLR0917 (one positional per column of the table)
        part: str, figure: str, value: float, unit: str, formula: str, source: str, extra: bool
    ) -> float:
        lines.append(Line(part, figure, value, unit, formula, source, extra))
        return value

    api_cores = add(
        "online API", "cores", math.ceil(rps * API_CPU_MS.value / 1000 / a.cpu_target), "cores",
        f"ceil(rps x {API_CPU_MS.value} ms / 1000 / cpu_target {a.cpu_target})",
        API_CPU_MS.source, items > 1682 or rps > 400,
    )  # fmt: skip
    add(
        "online API", "replicas", max(2, math.ceil(api_cores / a.cores_per_replica)), "pods",
        f"max(2, ceil(cores / {a.cores_per_replica} per replica)); 2 for a rolling update",
        "the line above", items > 1682 or rps > 400,
    )  # fmt: skip
    per_worker = min(NEARLINE_FRESH_EVENTS_S.value, NEARLINE_MAX_EVENTS_S.value)
    workers = add(
        "nearline", "workers", max(1, math.ceil(events_per_s / (per_worker * a.nearline_headroom))),
        "processes",
        f"ceil(events/s / ({per_worker:g} x headroom {a.nearline_headroom}))",
        NEARLINE_FRESH_EVENTS_S.source, events_per_s > per_worker,
    )  # fmt: skip
    add(
        "nearline", "Kafka partitions", max(3, 2 * int(workers)), "partitions",
        "max(3, 2 x workers): room to double the workers without repartitioning",
        "the line above", events_per_s > per_worker,
    )  # fmt: skip
    active = users * a.active_share
    per_user_events = min(float(DEDUPE_WINDOW), events_per_s * a.ttl_s / max(active, 1.0))
    per_user = redis_bytes_per_user(per_user_events)
    add(
        "Redis", "events remembered per active user", per_user_events, "events",
        f"min({DEDUPE_WINDOW}, events/s x ttl {a.ttl_s:g} s / active users)",
        "the state's dedupe window (shared/storage/user_state.py)", False,
    )  # fmt: skip
    add(
        "Redis", "memory (primary)", active * per_user * a.redis_overhead / 1e9, "GB",
        f"active users x bytes per user ({per_user:,.0f}, interpolated) x overhead "
        f"{a.redis_overhead}",
        REDIS_SOURCE, active > 10_000,
    )  # fmt: skip
    list_bytes = CASSANDRA_LIST_BYTES.value * a.candidates_per_user / 200
    candidates_gb = add(
        "Cassandra", "disk for candidates", users * list_bytes * a.replication / 1e9, "GB",
        f"users x {list_bytes:,.0f} B per list x replication {a.replication}",
        CASSANDRA_LIST_BYTES.source, users > 1000,
    )  # fmt: skip
    history_gb = add(
        "Cassandra", "disk for the history",
        events_per_s * 86400 * a.history_days * CASSANDRA_EVENT_BYTES.value * a.replication / 1e9,
        "GB",
        f"events/s x 86,400 x {a.history_days:g} days x {CASSANDRA_EVENT_BYTES.value} B x "
        f"replication {a.replication}",
        CASSANDRA_EVENT_BYTES.source, True,
    )  # fmt: skip
    add(
        "Cassandra", "nodes",
        max(a.replication, math.ceil((candidates_gb + history_gb) / (a.disk_per_node_gb * a.disk_fill))),
        "nodes",
        f"max(replication, ceil(disk / ({a.disk_per_node_gb:g} GB x fill {a.disk_fill})))",
        "the two lines above", True,
    )  # fmt: skip
    interactions_m = events_per_s * 86400 * a.training_days / 1e6
    add(
        "offline", "interactions per run", interactions_m, "millions",
        f"events/s x 86,400 x {a.training_days:g} days of the lake",
        "the traffic asked for", False,
    )  # fmt: skip
    add(
        "offline", "CPU per run", interactions_m * OFFLINE_CPU_S_PER_M.value / 3600, "core-hours",
        f"millions x {OFFLINE_CPU_S_PER_M.value:.1f} CPU s per million / 3,600 (linear from "
        "the 20M run; the measured growth was sublinear)",
        OFFLINE_CPU_S_PER_M.source, interactions_m > MEASURED_INTERACTIONS_M,
    )  # fmt: skip
    return lines


def as_dicts(lines: list[Line]) -> list[dict[str, Any]]:
    return [asdict(line) for line in lines]
