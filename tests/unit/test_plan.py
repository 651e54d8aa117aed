"""``recsys plan``: the formulas over the measured inputs, the interpolation of the Redis
sizes, and the command's output and errors."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from recsys.cli import app, main
from recsys.plan import (
    API_CPU_MS,
    CASSANDRA_EVENT_BYTES,
    REDIS_BYTES_PER_USER,
    Assumptions,
    plan,
    redis_bytes_per_user,
)


def test_redis_sizes_are_the_measured_points_and_grow_between_them() -> None:
    for events, size in REDIS_BYTES_PER_USER.items():
        assert redis_bytes_per_user(events) == size
    assert redis_bytes_per_user(550) == pytest.approx((5968 + 134864) / 2)
    assert redis_bytes_per_user(1e9) == REDIS_BYTES_PER_USER[8192]  # the dedupe window caps it
    sizes = [redis_bytes_per_user(n) for n in (1, 10, 50, 100, 500, 1000, 4000, 8192)]
    assert sizes == sorted(sizes)


def test_the_plan_of_a_hand_example() -> None:
    a = Assumptions()
    lines = {
        (x.part, x.figure): x for x in plan(users=1e6, items=5e4, rps=500, events_per_s=5e3, a=a)
    }
    cores = math.ceil(500 * API_CPU_MS.value / 1000 / a.cpu_target)
    assert lines["online API", "cores"].value == cores == 3
    assert lines["online API", "replicas"].value == 2
    assert lines["nearline", "workers"].value == math.ceil(5000 / (5000 * 0.7)) == 2
    assert lines["nearline", "Kafka partitions"].value == 4
    remembered = 5000 * a.ttl_s / 1e6
    assert lines["Redis", "events remembered per active user"].value == pytest.approx(remembered)
    history = 5000 * 86400 * 90 * CASSANDRA_EVENT_BYTES.value * 3 / 1e9
    assert lines["Cassandra", "disk for the history"].value == pytest.approx(history)
    for line in lines.values():
        assert line.formula and line.source
    # beyond what was measured: a catalogue of 50,000 items; 5,000 events/s was measured
    assert (
        lines["online API", "cores"].extrapolated and not lines["nearline", "workers"].extrapolated
    )


def test_the_command_prints_json_and_refuses_a_bad_number(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "plan",
            "--users",
            "10M",
            "--items",
            "100k",
            "--rps",
            "5000",
            "--events-per-s",
            "50000",
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    out = json.loads(done.output)
    assert out["asked"] == {"users": 1e7, "items": 1e5, "rps": 5000.0, "events_per_s": 50000.0}
    assert {line["part"] for line in out["plan"]} == {
        "online API",
        "nearline",
        "Redis",
        "Cassandra",
        "offline",
    }
    monkeypatch.setattr("sys.argv", ["recsys", "plan", "--users", "lots"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: --users 'lots': use a number like 5000, 100k or 10M"
    )
