"""Redis, Cassandra and a bundle failing under a stream into the online API as served
(``recsys bench faults``' scenarios: :func:`recsys.bench.faults.redis_restart`,
:func:`~recsys.bench.faults.cassandra_restart`, :func:`~recsys.bench.faults.bundle_damaged`).

The store each one stops is the test's own (a redis-server, a Cassandra node on free
ports), so the suite's shared services are never touched; the others are the shared ones,
in a topic, keyspace and namespace of the test's own. Each fails if an accepted event is
lost or applied twice, if the state at the end differs from the one an unbroken run writes
from everything the log holds, or if a recommendation took longer than the budget by its
own clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recsys.bench.faults import bundle_damaged, cassandra_restart, redis_restart
from shared.settings import Settings
from tests.conftest import CASSANDRA_URL, KAFKA_URL, REDIS_URL

pytestmark = [
    pytest.mark.redis,
    pytest.mark.cassandra,
    pytest.mark.kafka,
    pytest.mark.timeout(900),
]
# Below `recsys bench faults`' 1,000/s: on two cores the posting threads, the worker, the
# API and three JVMs already share the CPU, and a starved API process is late by its own
# clock for want of a core, not for anything the fault did.
STREAM = {"rate": 300.0, "phase_s": 3.0}


def assert_nothing_lost_and_on_time(figures: dict[str, Any]) -> None:
    """Nothing lost, doubled or different; no answer over budget by the API's own clock
    once the time the API waited for a core is taken out, and with it, at most the SLO's
    share (1 %) and none past four times the budget.

    On two shared cores the stream, the worker, the restarted node and the API compete for
    the CPU, where in production the API has cores of its own. In 17 Cassandra-restart runs
    at load 5-22 (docs/benchmarks/faults.md), 25 of the 29 late answers whose main thread's
    run-queue wait was read had waited on the run queue for all their time over budget,
    and in the 5 runs that read every thread's wait, all 8 had."""
    assert figures["accepted"] > 1000 and figures["refused"] == 0, figures
    assert figures["worker_caught_up"], figures
    assert figures["accepted_not_in_log"] == 0, figures
    assert figures["applied"] == figures["accepted"], figures
    assert figures["lost"] == 0 and figures["duplicated"] == 0, figures
    assert figures["users_differing_from_unbroken_run"] == 0, figures
    assert figures["reads"] > 50 and figures["reads_failed"] == 0, figures
    assert figures["over_budget_on_cpu"] == 0, figures
    assert figures["over_budget"] <= 0.01 * figures["reads"], figures
    assert max(figures["longest_answer_own_ms"].values()) < 4 * Settings().budget_ms, figures


def test_redis_stopped_restarted_empty_and_rebuilt_under_the_stream(tmp_path: Path) -> None:
    figures = redis_restart(
        tmp_path, Settings().cache_dir, cassandra_url=CASSANDRA_URL, kafka_url=KAFKA_URL, **STREAM
    )
    assert_nothing_lost_and_on_time(figures)
    assert figures["accepted_while_down"] > 0  # the API took events with Redis gone
    assert figures["reads_while_down"] > 0
    assert figures["reads_degraded_while_down"] >= figures["reads_while_down"] // 2, figures
    assert figures["rebuild"]["users"] > 0 and figures["rebuild"]["applied"] > 0, figures
    assert figures["recover_s"] is not None and figures["worker_resumed_s"] is not None


def test_cassandra_stopped_and_restarted_under_the_stream(tmp_path: Path) -> None:
    figures = cassandra_restart(
        tmp_path, Settings().cache_dir, redis_url=REDIS_URL, kafka_url=KAFKA_URL, **STREAM
    )
    assert_nothing_lost_and_on_time(figures)
    assert figures["accepted_while_down"] > 0 and figures["reads_while_down"] > 0
    assert figures["history_missing"] == 0 and figures["history_doubled"] == 0, figures
    assert figures["recover_s"] is not None and figures["worker_resumed_s"] is not None


def test_a_damaged_bundle_promoted_under_the_stream_is_refused(tmp_path: Path) -> None:
    figures = bundle_damaged(
        tmp_path, cassandra_url=CASSANDRA_URL, redis_url=REDIS_URL, kafka_url=KAFKA_URL, **STREAM
    )
    assert_nothing_lost_and_on_time(figures)
    assert figures["bundle_refused"] and figures["served_only_previous"], figures
    assert figures["counted"] and figures["logged"], figures
