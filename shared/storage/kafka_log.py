"""Event log on Apache Kafka: ``kafka://host:port[,host:port]/topic``.

Producers wait for all in-sync replicas (``acks=all``) before an append returns; consumers
never auto-commit, so a worker that dies before committing re-reads its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from shared.errors import ConfigError, ServiceUnavailable
from shared.storage.event_log import (
    DEFAULT_PARTITIONS,
    DEFAULT_TOPIC,
    EventLog,
    LogConsumer,
    LogRecord,
)

_SEND_TIMEOUT_S = 10.0


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

    def _admin(self) -> KafkaAdminClient:
        try:
            return KafkaAdminClient(
                bootstrap_servers=self._servers,
                request_timeout_ms=5000,
                bootstrap_timeout_ms=5000,
                client_id="recsys-admin",
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
        """Create ``topic`` unless it exists (replication 1 on one broker, else up to 3)."""
        admin = self._admin()
        try:
            brokers = len(admin.describe_cluster()["brokers"])
            admin.create_topics(
                [NewTopic(topic, num_partitions=partitions, replication_factor=min(3, brokers))]
            )
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def _get_producer(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(
                    bootstrap_servers=self._servers,
                    acks="all",
                    retries=5,
                    linger_ms=2,
                    max_in_flight_requests_per_connection=1,  # keeps per-key order on retry
                    request_timeout_ms=int(_SEND_TIMEOUT_S * 1000),
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

    def consumer(self, group_id: str, topic: str | None = None) -> LogConsumer:
        return _KafkaConsumer(self._servers, group_id, topic or self.topic)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=_SEND_TIMEOUT_S)
            self._producer = None


class _KafkaConsumer(LogConsumer):
    def __init__(self, servers: list[str], group_id: str, topic: str) -> None:
        self._consumer = KafkaConsumer(
            topic,
            bootstrap_servers=servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[LogRecord]:
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        records: list[LogRecord] = []
        for tp, messages in batches.items():
            assert isinstance(tp, TopicPartition)
            records.extend(
                LogRecord(
                    tp.topic, tp.partition, m.offset, (m.key or b"").decode(), m.value, m.timestamp
                )
                for m in messages
            )
        return records

    def commit(self) -> None:
        self._consumer.commit()

    def close(self) -> None:
        self._consumer.close(autocommit=False)
