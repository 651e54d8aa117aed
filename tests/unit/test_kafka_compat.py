"""The kafka-python fix is applied once, and only to the versions it was written for
(its effect is tested against a real broker in tests/contract/test_event_log.py)."""

from __future__ import annotations

import logging

import kafka
import pytest
from kafka.coordinator.base import BaseCoordinator

from shared.storage import kafka_compat


def test_importing_the_kafka_log_applies_the_fix_once() -> None:
    import shared.storage.kafka_log  # noqa: F401  (applies it)

    patched = BaseCoordinator.join_group_async
    assert getattr(patched, "recsys_fix", False)
    assert kafka_compat.apply() is True
    assert BaseCoordinator.join_group_async is patched  # not wrapped twice


def test_another_kafka_python_version_is_left_alone_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import shared.storage.kafka_log  # noqa: F401  (applies it: the original is then __wrapped__)

    unpatched = BaseCoordinator.join_group_async.__wrapped__  # type: ignore[attr-defined]
    monkeypatch.setattr(BaseCoordinator, "join_group_async", unpatched)
    monkeypatch.setattr(kafka, "__version__", "3.1.0")
    with caplog.at_level(logging.WARNING, logger=kafka_compat.__name__):
        assert kafka_compat.apply() is False
    assert BaseCoordinator.join_group_async is unpatched  # left as the library has it
    assert "kafka-python 3.1.0" in caplog.text and "not applied" in caplog.text
