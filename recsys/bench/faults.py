"""``recsys bench faults``: faults injected into real services under a stream, with what
each cost: events sent, accepted, applied, lost, duplicated, the longest answer and the
time to recover.

``kafka-broker``: a Kafka broker of the benchmark's own (the project's launcher, free ports,
a folder under the results) takes a stream of events through ``POST /v1/events`` (the
events API in-process, as the online API serves it). It is stopped mid-stream and started
again on its data. Every event answered 202 must reach the user state exactly once through
a nearline worker; every event sent while the broker is down must be answered 503. The test
suite runs the same scenario (``tests/integration/test_fault_kafka_broker.py``) and fails
on a lost or doubled event.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from recsys.bench.results import finish, machine, results_dir
from shared.events import Event, EventType
from shared.settings import Settings

FAULTS = ("kafka-broker",)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _event(i: int) -> Event:
    kind = (EventType.PLAY, EventType.CLICK, EventType.SKIP)[i % 3]
    return Event(
        event_id=f"fault-{i}",
        user_id=f"u{i % 9}",
        item_id=f"i{i % 40}",
        type=kind,
        timestamp=1_700_000_000.0 + i,
    )


def kafka_broker_restart(
    work: Path, cache_dir: Path, before: int = 300, during: int = 4, after: int = 300
) -> dict[str, Any]:
    """The scenario of the module docstring; returns its figures (see :func:`_tally`)."""
    from fastapi.testclient import TestClient

    from nearline.api import create_app
    from recsys.services.kafka import Kafka, KafkaConfig
    from recsys.services.manager import down_one, up_one
    from shared.storage.factory import open_event_log

    broker = Kafka(
        work / "services", cache_dir, KafkaConfig(port=_free_port(), controller_port=_free_port())
    )
    up_one(broker)
    answers: list[tuple[Event, int, float, str]] = []  # event, status, seconds, phase
    try:
        log = open_event_log(f"kafka://127.0.0.1:{broker.config.port}/fault-events")
        log.init_schema(partitions=2)
        with TestClient(create_app(log, Settings(home=work))) as client:

            def send(i: int, phase: str) -> int:
                event = _event(i)
                started = time.monotonic()
                reply = client.post("/v1/events", json=event.model_dump(mode="json"))
                status = int(reply.status_code)
                answers.append((event, status, time.monotonic() - started, phase))
                return status

            for i in range(before):
                send(i, "before")
            down_one(broker)
            for i in range(before, before + during):
                send(i, "down")
            up_one(broker)
            ready = time.monotonic()
            recovered: float | None = None
            i, taken = before + during, 0
            while taken < after and time.monotonic() < ready + 120:
                if send(i, "after") == 202:
                    taken += 1
                    recovered = recovered or time.monotonic() - ready
                i += 1
        accepted = [e for e, status, _, _ in answers if status == 202]
        counted = _apply(log, work, accepted)
    finally:
        down_one(broker, purge=True)
    return _tally(answers, accepted, counted, recovered)


def _apply(log: Any, work: Path, accepted: list[Event]) -> Counter[tuple[str, str]]:
    """Run a nearline worker over the topic into fresh embedded state; the per-(user, type)
    counts it holds once every accepted event is in (or a minute has passed)."""
    from nearline.lake import LakeWriter
    from nearline.worker import Worker, WorkerConfig
    from shared.storage.factory import open_history, open_user_state

    state = open_user_state("memory://fault-state", ttl_s=3600, recent_cap=50)
    history = open_history("memory://fault-history")
    worker = Worker(
        log,
        state,
        history,
        LakeWriter(work / "lake", log.topic),
        config=WorkerConfig(group_id="fault-check"),
    )
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + 60
    while worker.stats.applied < len(accepted) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # anything more (a doubled event) arrives now or never
    stop.set()
    runner.join(30)
    try:
        users = sorted({e.user_id for e in accepted})
        return Counter(
            {(u, t): n for u, s in state.get_many(users).items() for t, n in s.counters.items()}
        )
    finally:
        for store in (log, state, history):
            store.close()


def _tally(
    answers: list[tuple[Event, int, float, str]],
    accepted: list[Event],
    counted: Counter[tuple[str, str]],
    recovered: float | None,
) -> dict[str, Any]:
    expected = Counter((e.user_id, e.type.value) for e in accepted)
    down = [status for _, status, _, phase in answers if phase == "down"]
    return {
        "sent": len(answers),
        "accepted": len(accepted),
        "refused": sum(status != 202 for _, status, _, _ in answers),
        "applied": sum(min(counted[k], n) for k, n in expected.items()),
        "lost": sum(max(0, n - counted[k]) for k, n in expected.items()),
        "duplicated": sum(max(0, counted[k] - expected[k]) for k in counted),
        "accepted_while_down": sum(status == 202 for status in down),
        "answers_while_down": dict(Counter(str(s) for s in down)),
        "longest_answer_ms": round(1000 * max(s for _, _, s, _ in answers), 1),
        "longest_refusal_ms": round(
            1000 * max((s for _, st, s, _ in answers if st != 202), default=0.0), 1
        ),
        "recover_s": None if recovered is None else round(recovered, 2),
    }


def command(
    *,
    only: Annotated[
        str | None, typer.Option(help=f"One fault: {', '.join(FAULTS)} (default: all).")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Faults injected into real services under a stream: lost, doubled, longest answer."""
    if only is not None and only not in FAULTS:
        raise typer.BadParameter(f"{only!r}: use one of {', '.join(FAULTS)}", param_hint="--only")
    settings = Settings()
    folder = results_dir(settings, "faults")
    faults: dict[str, Any] = {}
    if only in (None, "kafka-broker"):
        faults["kafka-broker"] = kafka_broker_restart(folder / "kafka-broker", settings.cache_dir)
    figures = {"machine": machine(), "faults": faults}
    rows = [
        f"| {name} | {f['sent']} | {f['accepted']} | {f['applied']} | {f['lost']} | "
        f"{f['duplicated']} | {f['longest_answer_ms']} | {f['recover_s']} |"
        for name, f in faults.items()
    ]
    markdown = "\n".join(
        [
            "# Faults",
            "",
            "| fault | sent | accepted | applied | lost | duplicated | longest answer (ms) "
            "| recovered in (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    finish(folder, figures, markdown, json)
