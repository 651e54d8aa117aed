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


def test_the_producer_sends_again_after_the_broker_stopped_answering_past_its_send_timeout(
    tmp_path: Path,
) -> None:
    """A broker that takes a produce request and then does not answer (SIGSTOP: a process
    stuck in a long GC pause, or starved of CPU on a loaded machine) for longer than the
    producer's send timeout. The append is refused; once the broker answers again, the same
    event log must append again. kafka-python 3.0.12's idempotent producer never did: a
    batch that expired after it was sent reset its producer id, and it never asked for a new
    one, so every later append timed out (the API refused every event until restarted)."""
    import os
    import signal
    import time

    from recsys.bench.faults import _free_port
    from recsys.services.kafka import Kafka, KafkaConfig
    from recsys.services.manager import down_one, up_one
    from recsys.services.proc import read_pid
    from shared.errors import ServiceUnavailable
    from shared.storage.factory import open_event_log

    config = KafkaConfig(port=_free_port(), controller_port=_free_port())
    broker = Kafka(tmp_path / "services", Settings().cache_dir, config)
    up_one(broker)
    try:
        log = open_event_log(f"kafka://127.0.0.1:{config.port}/frozen")
        log.init_schema(partitions=2)
        log.append([("user1", b"before")])
        pid = read_pid(broker.pid_path)
        assert pid is not None
        os.killpg(pid, signal.SIGSTOP)
        try:
            with pytest.raises(ServiceUnavailable):  # the send timeout: 10 s
                log.append([("user1", b"while stopped")])
        finally:
            os.killpg(pid, signal.SIGCONT)
        answered = time.monotonic()
        while True:
            try:
                log.append([("user1", b"after")])
                break
            except ServiceUnavailable:
                assert time.monotonic() - answered < 60, "no append went through in 60 s"
        consumer = log.consumer("frozen-reader")
        try:
            values: list[bytes] = []
            for _ in range(40):
                values += [r.value for r in consumer.poll(max_records=100, timeout_s=0.5)]
                if b"after" in values:
                    break
        finally:
            consumer.close()
        assert values[0] == b"before" and b"after" in values
        log.close()
    finally:
        down_one(broker)
