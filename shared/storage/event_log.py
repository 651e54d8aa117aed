"""Event log role: an ordered, partitioned, durable log of records keyed by user id.

Real implementation: Apache Kafka. Embedded: SQLite. Records with the same key land in the
same partition, so one user's events stay in order. Consumers belong to a group and commit
their position explicitly, after their side effects succeeded (at-least-once delivery).

Two ways in: ``append`` returns once the records are durable (the events API, which answers
202 only then); ``publish`` hands them to the log's own batching and returns at once, with
failures reported to a callback (the impression log, which must never hold up an answer),
and ``flush`` waits for what was published.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from shared.errors import RecsysError
from shared.storage.base import Store

DEFAULT_TOPIC = "events"
DEFAULT_PARTITIONS = 4
# Told of each published record that was not delivered, with the reason; it may run on the
# log's own I/O thread, so it must be quick and must not raise.
DeliveryErrback = Callable[[BaseException], None]


class CommitFailed(RecsysError):
    """The group moved on (a rebalance) before the commit: the records will be delivered again."""

    exit_code = 3


class LogRecord(NamedTuple):
    """One record as a consumer sees it."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    timestamp_ms: int


class LogConsumer(ABC):
    """A member of a consumer group reading one topic."""

    @abstractmethod
    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[LogRecord]:
        """Return the next records (possibly none after ``timeout_s``)."""

    @abstractmethod
    def positions(self) -> dict[int, int]:
        """A snapshot of the next offset per partition after the records polled so far.

        Partitions this member owns but has polled nothing from since it got them may be
        left out. ``commit(positions)`` later commits exactly this point, whatever was
        polled meanwhile: the way to commit a checkpoint whose writes finished in the
        background while polling went on.
        """

    @abstractmethod
    def commit(self, positions: Mapping[int, int] | None = None) -> None:
        """Commit ``positions`` (partition -> next offset), by default those of ``positions()``.

        Raises ``CommitFailed`` when the group rebalanced first (the uncommitted records go
        to whichever member owns their partition now, so side effects must be idempotent).
        """

    @abstractmethod
    def close(self) -> None:
        """Leave the group without committing."""

    def lag(self) -> dict[int, int]:
        """Records behind the end of each assigned partition, where known."""
        return {}

    def assignment(self) -> list[int]:
        """Partitions this member owns right now."""
        return []


class EventLog(Store):
    """Append records to topics and hand out consumers."""

    role = "event log"

    def __init__(self, url: str, topic: str = DEFAULT_TOPIC) -> None:
        super().__init__(url)
        self.topic = topic

    @abstractmethod
    def init_schema(self, partitions: int = DEFAULT_PARTITIONS) -> None:
        """Create the default topic (idempotent)."""

    @abstractmethod
    def append(self, records: Sequence[tuple[str, bytes]], topic: str | None = None) -> None:
        """Append ``(key, value)`` records; return only once they are durable.

        Raises ``ServiceUnavailable`` when the log did not acknowledge them.
        """

    @abstractmethod
    def publish(
        self,
        records: Sequence[tuple[str, bytes]],
        topic: str | None = None,
        on_error: DeliveryErrback | None = None,
    ) -> None:
        """Hand ``(key, value)`` records to the log's batching and return without waiting.

        Never raises for the log itself being down or refusing a record: ``on_error`` is
        called once per record that was not delivered (records are lost unnoticed without
        one). Per-key order is kept among published records, as with ``append``.
        """

    @abstractmethod
    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every record published so far is delivered or reported failed.

        Raises ``ServiceUnavailable`` if that takes longer than ``timeout_s``.
        """

    @abstractmethod
    def create_topic(self, topic: str, partitions: int = DEFAULT_PARTITIONS) -> None:
        """Create ``topic`` unless it exists (e.g. a dead-letter topic)."""

    @abstractmethod
    def consumer(
        self,
        group_id: str,
        topic: str | None = None,
        on_revoke: Callable[[], None] | None = None,
    ) -> LogConsumer:
        """A consumer in ``group_id``; a new group starts from the earliest record.

        ``on_revoke`` runs inside ``poll`` before partitions move to another member (a
        rebalance): the last chance to finish pending work and commit.
        """
