"""`recsys services` against the real servers it runs.

Light on purpose: other tests use the same Kafka, Cassandra and Redis, so nothing here stops
or purges them. `up` starts whatever is missing (minutes on a cold machine: Maven fetches the
jars once) and is then a no-op, which is itself what these tests check.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("kafka", "cassandra", "redis")

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.cassandra,
    pytest.mark.redis,
    # A cold `up` downloads ~110 MB of jars and waits for Cassandra.
    pytest.mark.timeout(900),
]


# The console script users run, from the same environment as the tests.
RECSYS = Path(sys.executable).parent / "recsys"


def services(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `recsys services ARGS` from the repository root (default state dir var/services)."""
    return subprocess.run(
        [str(RECSYS), "services", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def status_json(*names: str) -> dict[str, Any]:
    done = services("status", "--json", *names, timeout=120)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def started() -> dict[str, Any]:
    """Everything up (started now or already running); the status right after."""
    done = services("up", timeout=840)
    assert done.returncode == 0, done.stdout + done.stderr
    return status_json()


def test_up_leaves_all_three_answering(started: dict[str, Any]) -> None:
    assert sorted(started) == sorted(SERVICES)
    for name, st in started.items():
        assert st["state"] in ("healthy", "external"), (name, st)
    assert started["cassandra"]["version"].startswith(("4.", "5."))
    assert started["redis"]["version"]
    done = services("status", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in SERVICES:
        assert name in done.stdout


def test_up_again_is_a_quick_no_op(started: dict[str, Any]) -> None:
    begin = time.monotonic()
    done = services("up", timeout=300)
    took = time.monotonic() - begin
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line[:1] in "✓✗!"}
    for name in SERVICES:
        assert "already running" in lines[name] or "external" in lines[name], lines[name]
    assert took < 60, f"an idempotent `up` took {took:.0f} s"
    after = status_json()
    for name in SERVICES:
        # Same processes as before: nothing was restarted.
        assert after[name]["pid"] == started[name]["pid"], name
        assert after[name]["state"] == started[name]["state"], name


def test_status_of_a_subset_is_one_json_object(started: dict[str, Any]) -> None:
    st = status_json("redis", "kafka")
    assert sorted(st) == ["kafka", "redis"]
    assert st["kafka"]["address"] == "127.0.0.1:9092"
    assert st["redis"]["address"] == "127.0.0.1:6379"


def test_unknown_service_is_refused(started: dict[str, Any]) -> None:
    done = services("status", "zookeeper", timeout=60)
    assert done.returncode != 0
    assert "zookeeper" in done.stderr
