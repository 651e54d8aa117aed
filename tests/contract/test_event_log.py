"""Contract of the event log role, run against every implementation."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import MessageSizeTooLargeError

from shared.errors import ServiceUnavailable
from shared.storage.event_log import EventLog, LogConsumer, LogRecord
from shared.storage.factory import open_event_log
from tests.conftest import KAFKA_URL, unique


@pytest.fixture(params=["memory", "sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    topic = unique("events")
    if request.param == "kafka":
        url = f"{KAFKA_URL.rstrip('/')}/{topic}"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/log.db"
    else:
        url = "memory://log"
    opened = open_event_log(url)
    opened.init_schema(partitions=4)
    yield opened
    opened.close()


def drain(consumer: LogConsumer, expected: int, rounds: int = 40) -> list[LogRecord]:
    """Poll until ``expected`` records arrived (a Kafka group needs a moment to join)."""
    records: list[LogRecord] = []
    for _ in range(rounds):
        records.extend(consumer.poll(max_records=500, timeout_s=0.5))
        if len(records) >= expected:
            break
    return records


def test_records_come_back_in_order_per_key(log: EventLog) -> None:
    sent = [(f"user{i % 5}", f"{i}".encode()) for i in range(100)]
    log.append(sent)
    consumer = log.consumer(unique("group"))
    try:
        got = drain(consumer, 100)
    finally:
        consumer.close()
    assert sorted((r.key, int(r.value)) for r in got) == sorted((k, int(v)) for k, v in sent)
    for user in {k for k, _ in sent}:
        values = [int(r.value) for r in got if r.key == user]
        assert values == sorted(values)  # one user's events stay in order
        assert len({r.partition for r in got if r.key == user}) == 1


def test_committed_position_survives_a_new_consumer(log: EventLog) -> None:
    group = unique("group")
    log.append([("u1", b"a"), ("u1", b"b")])
    first = log.consumer(group)
    assert [r.value for r in drain(first, 2)] == [b"a", b"b"]
    first.commit()
    first.close()
    log.append([("u1", b"c")])
    second = log.consumer(group)
    try:
        assert [r.value for r in drain(second, 1)] == [b"c"]
    finally:
        second.close()


def test_uncommitted_records_are_delivered_again(log: EventLog) -> None:
    group = unique("group")
    log.append([("u1", b"a"), ("u2", b"b")])
    first = log.consumer(group)
    assert len(drain(first, 2)) == 2
    first.close()  # died before committing
    second = log.consumer(group)
    try:
        assert sorted(r.value for r in drain(second, 2)) == [b"a", b"b"]
    finally:
        second.close()


def test_commit_at_positions_leaves_records_polled_after_the_snapshot(log: EventLog) -> None:
    group = unique("group")
    log.append([("u1", b"a"), ("u1", b"b")])
    first = log.consumer(group)
    got = drain(first, 2)
    assert [r.value for r in got] == [b"a", b"b"]
    snapshot = first.positions()
    assert snapshot[got[0].partition] == got[-1].offset + 1
    log.append([("u1", b"c")])
    assert [r.value for r in drain(first, 1)] == [b"c"]
    assert snapshot[got[0].partition] == got[-1].offset + 1  # a snapshot, not a view
    assert first.positions()[got[0].partition] == got[-1].offset + 2
    first.commit(snapshot)
    first.close()
    second = log.consumer(group)
    try:
        assert [r.value for r in drain(second, 1)] == [b"c"]  # polled after it: not committed
    finally:
        second.close()


def test_commit_at_positions_commits_only_the_partitions_given(log: EventLog) -> None:
    group = unique("group")
    log.append([(f"u{i}", f"{i}".encode()) for i in range(40)])
    first = log.consumer(group)
    got = drain(first, 40)
    assert len(got) == 40
    partitions = sorted({r.partition for r in got})
    assert len(partitions) > 1
    kept, *others = partitions
    first.commit({kept: first.positions()[kept]})
    first.close()
    second = log.consumer(group)
    try:
        again = drain(second, 40 - sum(r.partition == kept for r in got))
        assert sorted(int(r.value) for r in again) == sorted(
            int(r.value) for r in got if r.partition in others
        )
        assert second.poll(timeout_s=0.3) == []
    finally:
        second.close()


def test_groups_read_independently(log: EventLog) -> None:
    log.append([("u1", b"x")])
    for _ in range(2):
        consumer = log.consumer(unique("group"))
        try:
            assert [r.value for r in drain(consumer, 1)] == [b"x"]
        finally:
            consumer.close()


def test_other_topics_are_separate(log: EventLog) -> None:
    dead_letters = unique("dead")
    log.append([("u1", b"good")])
    log.append([("u1", b"bad")], topic=dead_letters)
    consumer = log.consumer(unique("group"), topic=dead_letters)
    try:
        assert [r.value for r in drain(consumer, 1)] == [b"bad"]
        assert consumer.poll(timeout_s=0.3) == []
    finally:
        consumer.close()


def test_created_topic_takes_records(log: EventLog) -> None:
    topic = unique("created")
    log.create_topic(topic, partitions=2)
    log.create_topic(topic, partitions=2)  # idempotent
    log.append([("u1", b"x")], topic=topic)
    consumer = log.consumer(unique("group"), topic=topic)
    try:
        assert [r.value for r in drain(consumer, 1)] == [b"x"]
    finally:
        consumer.close()


def test_lag_and_assignment(log: EventLog) -> None:
    log.append([("u1", f"{i}".encode()) for i in range(10)])
    consumer = log.consumer(unique("group"))
    try:
        got = drain(consumer, 10)
        partition = got[0].partition
        assert sorted(consumer.assignment()) == [0, 1, 2, 3]
        assert consumer.lag().get(partition) == 0
        log.append([("u1", f"{i}".encode()) for i in range(10, 15)])
        one: list[LogRecord] = []
        for _ in range(40):
            one = consumer.poll(max_records=1, timeout_s=0.5)
            if one:
                break
        assert [r.value for r in one] == [b"10"]
        assert consumer.lag()[partition] == 4
    finally:
        consumer.close()


def test_published_records_are_readable_in_order_after_flush(log: EventLog) -> None:
    failures: list[BaseException] = []
    sent = [(f"user{i % 3}", f"{i}".encode()) for i in range(60)]
    for start in range(0, len(sent), 7):  # several publishes, as the impression sender does
        log.publish(sent[start : start + 7], on_error=failures.append)
    log.flush(timeout_s=10)
    consumer = log.consumer(unique("group"))
    try:
        got = drain(consumer, 60)
    finally:
        consumer.close()
    assert failures == []
    assert sorted((r.key, int(r.value)) for r in got) == sorted((k, int(v)) for k, v in sent)
    for user in {k for k, _ in sent}:
        values = [int(r.value) for r in got if r.key == user]
        assert values == sorted(values)


def test_publish_to_another_topic(log: EventLog) -> None:
    topic = unique("published")
    log.create_topic(topic, partitions=2)
    log.publish([("u1", b"x")], topic=topic)
    log.flush(timeout_s=10)
    consumer = log.consumer(unique("group"), topic=topic)
    try:
        assert [r.value for r in drain(consumer, 1)] == [b"x"]
    finally:
        consumer.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_embedded_publish_failure_reaches_the_callback(kind: str, tmp_path: Path) -> None:
    log = open_event_log("memory://log" if kind == "memory" else f"sqlite:///{tmp_path}/l.db")
    log.init_schema()
    log.close()  # its database is gone: every write fails
    failures: list[BaseException] = []
    log.publish([("u1", b"a"), ("u2", b"b")], on_error=failures.append)  # returns, no raise
    assert len(failures) == 2
    log.publish([("u1", b"c")])  # nobody to tell: still no raise


@pytest.mark.kafka
def test_kafka_publish_returns_before_delivery_and_reports_a_refused_record() -> None:
    """A topic whose broker limit (max.message.bytes) a record exceeds: the producer sends
    it, the broker refuses it, and the errback hears of it, after publish returned."""
    topic = unique("events")
    admin = KafkaAdminClient(bootstrap_servers=KAFKA_URL.removeprefix("kafka://").split("/")[0])
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "2000"})])
    finally:
        admin.close()
    log = open_event_log(f"{KAFKA_URL.rstrip('/')}/{topic}")
    failures: list[BaseException] = []
    try:
        log.publish([("u1", b"small")], on_error=failures.append)
        log.flush(timeout_s=10)
        assert failures == []
        log.publish([("u1", b"x" * 10_000)], on_error=failures.append)
        assert failures == []  # not sent yet: publish did not wait for the broker
        log.flush(timeout_s=10)
        assert len(failures) == 1 and isinstance(failures[0], MessageSizeTooLargeError)
    finally:
        log.close()


@pytest.mark.kafka
def test_kafka_publish_reports_an_oversized_record_and_sends_the_others() -> None:
    """Over the producer's request limit (1 MiB), a record is refused before it is sent:
    reported at once, and the records around it still go."""
    log = open_event_log(f"{KAFKA_URL.rstrip('/')}/{unique('events')}")
    log.init_schema(partitions=1)
    failures: list[BaseException] = []
    try:
        log.publish(
            [("u1", b"a"), ("u1", b"x" * 2_000_000), ("u1", b"b")], on_error=failures.append
        )
        assert len(failures) == 1 and isinstance(failures[0], MessageSizeTooLargeError)
        log.flush(timeout_s=10)
        consumer = log.consumer(unique("group"))
        try:
            assert [r.value for r in drain(consumer, 2)] == [b"a", b"b"]
        finally:
            consumer.close()
    finally:
        log.close()


def test_kafka_publish_with_no_broker_reports_every_record() -> None:
    """Nothing listens on port 1: the producer gives up after its connect timeout (5 s),
    and publish reports each record rather than raising."""
    log = open_event_log("kafka://127.0.0.1:1/events")
    failures: list[BaseException] = []
    started = time.monotonic()
    try:
        log.publish([("u1", b"a"), ("u2", b"b"), ("u3", b"c")], on_error=failures.append)
        log.flush(timeout_s=1)  # no producer came up: nothing to wait for
    finally:
        log.close()
    assert len(failures) == 3 and all(isinstance(f, ServiceUnavailable) for f in failures)
    assert time.monotonic() - started < 15


@contextlib.contextmanager
def a_group_of_two(on_revoke: Callable[[], None]) -> Iterator[tuple[LogConsumer, LogConsumer]]:
    """A topic of 4 partitions holding 20 records, read by a first member that owns every
    partition; then a second member joins the group. Yields (first, second)."""
    log = open_event_log(f"{KAFKA_URL.rstrip('/')}/{unique('events')}")
    log.init_schema(partitions=4)
    group = unique("group")
    members = [log.consumer(group, on_revoke=on_revoke)]
    try:
        log.append([(f"u{i}", b"x") for i in range(20)])
        drain(members[0], 20)
        assert members[0].assignment() == [0, 1, 2, 3]
        members.append(log.consumer(group))
        yield members[0], members[1]
    finally:
        for member in members:
            member.close()
        log.close()


@pytest.mark.kafka
def test_on_revoke_runs_before_partitions_move_to_a_new_member() -> None:
    revoked: list[int] = []
    with a_group_of_two(on_revoke=lambda: revoked.append(len(revoked))) as (first, second):
        for _ in range(100):
            first.poll(timeout_s=0.2)
            second.poll(timeout_s=0.2)
            # Mid-rebalance a member that has not polled yet still reports its old ones.
            if settled(first, second):
                break
        assert revoked, "the first member was not told before its partitions moved"
        assert settled(first, second), (first.assignment(), second.assignment())


@pytest.mark.kafka
def test_a_group_settles_when_its_members_are_busy_between_polls() -> None:
    """Members that poll without waiting and spend their time between polls (a worker
    applying a batch) settle, and stay settled. kafka-python 3.0.12 threw away a join that
    finished while its member was outside ``poll`` and sent a new JoinGroup; from the
    group's leader that starts a new rebalance, so the group never settled (and under load,
    with short polls, took tens of seconds: the project's CI failed the test above on it)."""
    revoked: list[float] = []
    with a_group_of_two(on_revoke=lambda: revoked.append(time.monotonic())) as (first, second):

        def both_poll_then_work() -> None:
            first.poll(timeout_s=0)  # returns at once: a join finishes during the work
            second.poll(timeout_s=0)
            time.sleep(0.3)

        for _ in range(60):  # 18 s; a rebalance takes one or two rounds
            both_poll_then_work()
            if settled(first, second):
                break
        assert settled(first, second), (first.assignment(), second.assignment())
        since = time.monotonic()
        while time.monotonic() - since < 5:  # several heartbeats (1 s) of each member
            both_poll_then_work()
        assert [round(t - since, 1) for t in revoked if t > since] == []
        assert settled(first, second), (first.assignment(), second.assignment())


def settled(*members: LogConsumer) -> bool:
    """Every member owns partitions, and each of 0-3 is owned by exactly one of them."""
    owned = [m.assignment() for m in members]
    return all(owned) and sorted(p for a in owned for p in a) == [0, 1, 2, 3]
