"""The Kafka broker stopped and restarted under a stream into ``POST /v1/events``
(``recsys bench faults``' scenario, :func:`recsys.bench.faults.kafka_broker_restart`).

A broker of the test's own (real Apache Kafka, started by the project's launcher on free
ports, so the suite's shared broker is never touched) is stopped mid-stream and started
again on its data. Every event the API accepted (202) must reach the user state exactly
once through a nearline worker; every event sent while the broker was down must be refused
(503) within the producer's bounded wait, never accepted and lost, and once one has been
refused the rest are refused at once (the events API's circuit breaker).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.bench.faults import kafka_broker_restart
from shared.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]
# The producer's bound on one append (shared/storage/kafka_log.py: connect 5 s, send 10 s),
# with room for a loaded machine.
REFUSAL_BOUND_MS = 20_000


def test_broker_stop_and_restart_loses_and_doubles_nothing(tmp_path: Path) -> None:
    figures = kafka_broker_restart(tmp_path, Settings().cache_dir, before=300, during=4, after=300)
    assert figures["accepted"] == 600 and figures["sent"] >= 604
    assert figures["accepted_while_down"] == 0 and figures["answers_while_down"] == {"503": 4}
    assert figures["applied"] == 600
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["longest_refusal_ms"] < REFUSAL_BOUND_MS
    # Only the first refusal waits for the producer; the open circuit answers the rest at once.
    assert figures["slow_refusals_while_down"] == 1, figures
    assert figures["recover_s"] is not None
