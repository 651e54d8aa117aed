"""The Kafka consumer wrapper when the cluster cannot be reached (its error handling only:
the real broker kill is ``tests/integration/test_fault_replicas.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import KafkaConnectionError, UnsupportedVersionError

from shared.storage.event_log import CommitFailed
from shared.storage.kafka_log import _KafkaConsumer


class _Client:
    """What ``kafka-python`` 3.0's consumer did when the group's coordinator was killed:
    ``poll`` raised the failed coordinator lookup's connection error."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.polls = 0

    def poll(self, **_: Any) -> dict[Any, Any]:
        self.polls += 1
        if self.polls == 1:
            raise self.error
        return {}

    def commit(self, _: Any = None) -> None:
        raise self.error


def _consumer(error: Exception) -> tuple[_KafkaConsumer, _Client]:
    consumer = _KafkaConsumer.__new__(_KafkaConsumer)
    client = _Client(error)
    consumer._consumer = client
    consumer._topic, consumer._positions = "events", {}
    consumer._deferring, consumer._quiet_until = False, 0.0
    return consumer, client


def test_a_poll_that_cannot_reach_the_coordinator_returns_nothing_and_polls_on() -> None:
    consumer, client = _consumer(KafkaConnectionError("111 ECONNREFUSED"))
    assert consumer.poll(timeout_s=0.01) == []
    assert consumer.poll(timeout_s=0.01) == []
    assert client.polls == 2


def test_a_commit_without_a_coordinator_fails_as_a_commit_the_worker_survives() -> None:
    consumer, _ = _consumer(KafkaConnectionError("111 ECONNREFUSED"))
    with pytest.raises(CommitFailed, match="no coordinator"):
        consumer.commit({0: 5})


def test_errors_that_retrying_cannot_cure_still_raise() -> None:
    consumer, _ = _consumer(UnsupportedVersionError("no"))
    with pytest.raises(UnsupportedVersionError):
        consumer.poll(timeout_s=0.01)
