"""Event log on Apache Kafka: ``kafka://host:port[,host:port]/topic``.

Producers wait for all in-sync replicas (``acks=all``) before an append returns; consumers
never auto-commit, so a worker that dies before committing re-reads its batch. ``publish``
uses the same producer without waiting: records join its batches (``linger_ms``), and each
one's future tells the errback if it was not delivered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from urllib.parse import urlsplit

from kafka import (
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from shared.errors import ConfigError, ServiceUnavailable
from shared.settings import Replication
from shared.storage import kafka_compat
from shared.storage.event_log import (
    DEFAULT_PARTITIONS,
    DEFAULT_TOPIC,
    CommitFailed,
    DeliveryErrback,
    EventLog,
    LogConsumer,
    LogRecord,
)

_SEND_TIMEOUT_S = 10.0
# An append gives up (the API answers 503) after at most this long with no broker, instead
# of kafka-python's defaults of 30 s to bootstrap and 60 s blocked on metadata.
_CONNECT_TIMEOUT_MS = 5000
# A member that died (SIGKILL) holds its partitions until this expires; 6 s is the broker's
# default minimum, so a restarted worker resumes within seconds instead of Kafka's 45 s.
log = logging.getLogger(__name__)
_SESSION_TIMEOUT_MS = 6000
_HEARTBEAT_MS = 1000
# Every client of ours (producer, consumers, admin) waits at most 1 s between attempts to
# reach a broker, as Kafka's Java client does: kafka-python 3 backs off exponentially up to
# 30 s, so a broker back after an outage of some seconds could stay unused for as long.
_CLIENT = {"reconnect_backoff_max_ms": 1000}
kafka_compat.apply()  # kafka-python 3.0.12 threw away joins that finished outside poll


def parse_kafka_url(url: str) -> tuple[list[str], str]:
    """Bootstrap servers and topic of a ``kafka://`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise ConfigError(f"{url}: expected kafka://host:port[,host:port]/topic")
    topic = parts.path.strip("/") or DEFAULT_TOPIC
    return parts.netloc.split(","), topic


class KafkaEventLog(EventLog):
    """The producer is created lazily and shared; consumers are one per group member."""

    def __init__(self, url: str, topic: str | None = None) -> None:
        servers, url_topic = parse_kafka_url(url)
        super().__init__(url, topic or url_topic)
        self._servers = servers
        self._producer: KafkaProducer | None = None
        self._producer_lock = threading.Lock()  # append and publish may race to create it

    def _admin(self) -> KafkaAdminClient:
        try:
            return KafkaAdminClient(
                bootstrap_servers=self._servers,
                request_timeout_ms=5000,
                bootstrap_timeout_ms=5000,
                client_id="recsys-admin",
                **_CLIENT,
            )
        except KafkaError as err:
            raise ServiceUnavailable(self.role, self.url, repr(err)) from err

    def ping(self) -> None:
        admin = self._admin()
        try:
            admin.list_topics()
        except KafkaError as err:
            raise ServiceUnavailable(self.role, self.url, repr(err)) from err
        finally:
            admin.close()

    def init_schema(self, partitions: int = DEFAULT_PARTITIONS) -> None:
        self.create_topic(self.topic, partitions)

    def create_topic(self, topic: str, partitions: int = DEFAULT_PARTITIONS) -> None:
        """Create ``topic`` unless it exists, with the copies and ``min.insync.replicas``
        that :class:`shared.settings.Replication` gives for the brokers of the cluster
        (1 and 1 on one broker; 3 and 2 on three or more)."""
        admin = self._admin()
        try:
            policy = Replication(len(admin.describe_cluster()["brokers"]))
            admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=partitions,
                        replication_factor=policy.factor,
                        topic_configs={"min.insync.replicas": str(policy.min_insync)},
                    )
                ]
            )
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def _get_producer(self) -> KafkaProducer:
        if self._producer is not None:
            return self._producer
        with self._producer_lock:
            if self._producer is not None:
                return self._producer
            try:
                self._producer = KafkaProducer(
                    bootstrap_servers=self._servers,
                    acks="all",
                    retries=5,  # bounded twice: a count, and delivery_timeout_ms for all of them
                    linger_ms=2,
                    # Not idempotent: in kafka-python 3.0.12 an idempotent producer whose
                    # batch expires after it was sent (a broker lost or not answering for
                    # the send timeout) drops its producer id and never asks for another,
                    # so it sends nothing more (tests/integration/test_fault_kafka_broker.py).
                    # A retry may then write a record twice; the worker's dedupe on
                    # event_id applies it once.
                    enable_idempotence=False,
                    max_in_flight_requests_per_connection=1,  # keeps per-key order on retry
                    request_timeout_ms=_CONNECT_TIMEOUT_MS,
                    delivery_timeout_ms=int(_SEND_TIMEOUT_S * 1000),
                    bootstrap_timeout_ms=_CONNECT_TIMEOUT_MS,
                    max_block_ms=_CONNECT_TIMEOUT_MS,
                    **_CLIENT,
                )
            except KafkaError as err:
                raise ServiceUnavailable(self.role, self.url, repr(err)) from err
            return self._producer

    def append(self, records: Sequence[tuple[str, bytes]], topic: str | None = None) -> None:
        producer = self._get_producer()
        try:
            futures = [
                producer.send(topic or self.topic, key=k.encode(), value=v) for k, v in records
            ]
            producer.flush(timeout=_SEND_TIMEOUT_S)
            for future in futures:
                future.get(timeout=_SEND_TIMEOUT_S)
        except KafkaError as err:
            raise ServiceUnavailable(self.role, self.url, repr(err)) from err

    def publish(
        self,
        records: Sequence[tuple[str, bytes]],
        topic: str | None = None,
        on_error: DeliveryErrback | None = None,
    ) -> None:
        try:
            producer = self._get_producer()
        except ServiceUnavailable as err:  # no broker answered within _CONNECT_TIMEOUT_MS
            _report(on_error, err, len(records))
            return
        target = topic or self.topic
        for sent, (key, value) in enumerate(records):
            try:
                future = producer.send(target, key=key.encode(), value=value)
            except KafkaTimeoutError as err:
                # Metadata or buffer space did not come within max_block_ms: the broker is
                # out of reach, and each next send would block as long, so stop here.
                _report(on_error, err, len(records) - sent)
                return
            except KafkaError as err:  # this record refused (e.g. too large): others may go
                _report(on_error, err, 1)
                continue
            if on_error is not None:
                future.add_errback(on_error)

    def flush(self, timeout_s: float = 10.0) -> None:
        producer = self._producer
        if producer is None:
            return  # nothing was ever sent
        try:
            producer.flush(timeout=timeout_s)
        except KafkaError as err:
            raise ServiceUnavailable(self.role, self.url, repr(err)) from err

    def consumer(
        self,
        group_id: str,
        topic: str | None = None,
        on_revoke: Callable[[], None] | None = None,
    ) -> LogConsumer:
        return _KafkaConsumer(self._servers, group_id, topic or self.topic, on_revoke)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=_SEND_TIMEOUT_S)
            self._producer = None


def _report(on_error: DeliveryErrback | None, err: BaseException, records: int) -> None:
    if on_error is not None:
        for _ in range(records):
            on_error(err)


class _Revoked(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Runs ``on_revoke`` before the partitions move, then commits what it committed.

    kafka-python 3 calls rebalance listeners on its IO thread, where a blocking consumer
    call (``commit``) raises "Cannot block on net.run() from the IO thread itself": the
    worker died the moment a second member joined its group while it held uncommitted
    events. So ``on_revoke`` runs with the consumer's commits deferred (the lake files and
    history writes it waits for are not Kafka calls), and the listener then awaits the
    deferred commit on the IO loop, before the partitions are handed over.
    """

    def __init__(self, owner: _KafkaConsumer, on_revoke: Callable[[], None] | None) -> None:
        self._owner = owner
        self._on_revoke = on_revoke

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        try:
            if self._on_revoke is not None and revoked:
                offsets = self._owner._deferred_commit(self._on_revoke)
                if offsets is not _NOTHING:
                    try:
                        await self._owner._consumer.commit_async(offsets)
                    except KafkaError as err:  # the next owner replays; dedupe absorbs it
                        log.warning("commit before handing over partitions failed: %r", err)
        finally:
            self._owner._forget(revoked)

    async def on_partitions_assigned(self, assigned: object) -> None:
        pass


_NOTHING = object()  # no commit was asked for while deferring


class _KafkaConsumer(LogConsumer):
    def __init__(
        self,
        servers: list[str],
        group_id: str,
        topic: str,
        on_revoke: Callable[[], None] | None = None,
    ) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=_HEARTBEAT_MS,
            # kafka-python computes CRC-32C in pure Python (about a tenth of a nearline
            # worker's time); the broker already checked every batch's CRC on produce.
            check_crcs=False,
            **_CLIENT,
        )
        self._topic = topic
        self._positions: dict[TopicPartition, int] = {}
        self._deferring = False
        self._deferred: object = _NOTHING
        self._quiet_until = 0.0  # the next "unreachable" warning, no sooner
        self._consumer.subscribe([topic], listener=_Revoked(self, on_revoke))

    def _deferred_commit(self, work: Callable[[], None]) -> object:
        """Run ``work`` with :meth:`commit` recording its offsets instead of committing;
        return them (``None``: everything consumed), or ``_NOTHING``."""
        self._deferring, self._deferred = True, _NOTHING
        try:
            work()
        finally:
            self._deferring = False
        deferred, self._deferred = self._deferred, _NOTHING
        return deferred

    def _forget(self, revoked: Collection[TopicPartition]) -> None:
        """Drop the positions of revoked partitions: another member may move them on."""
        for tp in revoked:
            self._positions.pop(tp, None)

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[LogRecord]:
        """The next records, or none while the cluster cannot be reached: a broker that
        dies (the group's coordinator, or every broker) makes the client raise its
        connection error from ``poll``; the consumer finds the coordinator again on a later
        call, so the error is logged and the caller polls on instead of dying with it."""
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as err:
            if not err.retriable:
                raise
            self._unreachable(err)
            time.sleep(min(timeout_s, 0.5))  # no busy loop against a dead broker
            return []
        records: list[LogRecord] = []
        for tp, messages in batches.items():
            assert isinstance(tp, TopicPartition)
            records.extend(
                LogRecord(
                    tp.topic, tp.partition, m.offset, (m.key or b"").decode(), m.value, m.timestamp
                )
                for m in messages
            )
            self._positions[tp] = messages[-1].offset + 1
        return records

    def positions(self) -> dict[int, int]:
        owned = self._consumer.assignment()
        return {tp.partition: pos for tp, pos in self._positions.items() if tp in owned}

    def commit(self, positions: Mapping[int, int] | None = None) -> None:
        offsets = None
        if positions is not None:
            if not positions:
                return
            offsets = {
                TopicPartition(self._topic, p): OffsetAndMetadata(offset, "", -1)
                for p, offset in positions.items()
            }
        if self._deferring:  # inside the revoke listener: committed by it, on the IO loop
            self._deferred = offsets
            return
        try:
            self._consumer.commit(offsets)
        except CommitFailedError as err:
            raise CommitFailed(f"commit failed, the group rebalanced: {err}") from err
        except KafkaError as err:  # the coordinator died: a later commit covers these
            if not err.retriable:
                raise
            raise CommitFailed(f"commit failed, no coordinator: {err}") from err

    def _unreachable(self, err: KafkaError) -> None:
        """Log a poll that could not reach the cluster, at most every 5 s."""
        now = time.monotonic()
        if now >= self._quiet_until:
            self._quiet_until = now + 5.0
            log.warning("poll: the cluster is unreachable, polling on: %s", err)

    def lag(self) -> dict[int, int]:
        lags = {}
        for tp in self._consumer.assignment():
            end, position = self._consumer.highwater(tp), self._positions.get(tp)
            if end is not None and position is not None:
                lags[tp.partition] = max(0, end - position)
        return lags

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self._consumer.assignment())

    def close(self) -> None:
        self._consumer.close(autocommit=False)
