"""``recsys nearline``: the consumer-group worker and the events endpoint on its own."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.console import console, err_console
from shared.settings import Settings

if TYPE_CHECKING:
    from nearline.metrics import NearlineMetrics
    from nearline.worker import Worker, WorkerConfig
    from shared.storage.base import Store

app = typer.Typer(
    help="Nearline tier: events -> user state, history, event lake.", no_args_is_help=True
)


@app.command()
def run(
    group: Annotated[
        str, typer.Option(help="Consumer group; workers in one group share partitions.")
    ] = "nearline",
    topic: Annotated[
        str | None, typer.Option(help="Events topic (default: the event log URL's).")
    ] = None,
    dead_letter_topic: Annotated[
        str | None, typer.Option(help="Where malformed events go (default: <topic>.dead-letter).")
    ] = None,
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus metrics on this port (0: off).")
    ] = 0,
    metrics_host: Annotated[
        str,
        typer.Option(help="Address the metrics server binds (0.0.0.0: every interface)."),
    ] = "127.0.0.1",
    poll_records: Annotated[int, typer.Option(help="Most records per polled batch.")] = 1000,
    commit_interval: Annotated[
        float, typer.Option(help="Seconds between checkpoints (lake files + offset commit).")
    ] = 1.0,
    half_life: Annotated[
        float, typer.Option(help="Half-life in seconds of the session vector's time decay.")
    ] = 1800.0,
    max_records: Annotated[
        int | None, typer.Option(help="Stop after this many records (benchmarks, tests).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Consume the events topic until SIGTERM/SIGINT; then finish the batch and commit."""
    from nearline.metrics import NearlineMetrics
    from nearline.worker import WorkerConfig
    from shared.heap import freeze_startup_heap

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = WorkerConfig(
        group_id=group,
        topic=topic,
        dead_letter_topic=dead_letter_topic,
        poll_records=poll_records,
        commit_interval_s=commit_interval,
        half_life_s=half_life,
    )
    metrics = NearlineMetrics()
    with opened_worker(Settings(), config, metrics) as worker:
        if metrics_port:
            metrics.serve(metrics_port, metrics_host)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        freeze_startup_heap()
        started = time.perf_counter()
        stats = worker.run(stop, max_records=max_records)
        elapsed = time.perf_counter() - started
    console.print(
        f"nearline: {stats.records} records in {elapsed:.1f} s (applied {stats.applied},"
        f" duplicates {stats.duplicates}, dead letters {stats.dead_letters}),"
        f" {stats.commits} commits"
    )


@contextmanager
def opened_worker(
    settings: Settings, config: WorkerConfig, metrics: NearlineMetrics
) -> Iterator[Worker]:
    """A worker on the stores ``settings`` name (each pinged first), closed after."""
    from nearline.embeddings import LiveItemVectors
    from nearline.lake import LakeWriter
    from nearline.worker import Worker
    from shared.registry import ModelRegistry
    from shared.storage import factory

    stores: list[Store] = []
    try:
        event_log = factory.open_event_log(settings.event_log_url)
        stores.append(event_log)
        state = factory.open_user_state(
            settings.user_state_url, settings.user_state_ttl_s, settings.recent_items_cap
        )
        stores.append(state)
        history = factory.open_history(settings.history_url)
        stores.append(history)
        for store in stores:
            factory.ping(store)
        yield Worker(
            event_log,
            state,
            history,
            LakeWriter(settings.lake_dir, config.topic or event_log.topic),
            vectors=LiveItemVectors(ModelRegistry(settings.registry_url)),
            config=config,
            metrics=metrics,
        )
    finally:
        for store in stores:
            store.close()


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8001,
) -> None:
    """Serve POST /v1/events on its own (the online API includes the same router)."""
    import uvicorn

    from nearline.api import create_app

    uvicorn.run(create_app(settings=Settings()), host=host, port=port, log_level="info")


@app.command("rebuild-state")
def rebuild_state_command(
    user: Annotated[
        list[str] | None,
        typer.Option(help="Only these users (repeat the option); default: every user."),
    ] = None,
    half_life: Annotated[
        float, typer.Option(help="Half-life in seconds of the session vector (as the worker).")
    ] = 1800.0,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Rebuild the per-user state (Redis) from the event history (Cassandra), e.g. after
    Redis restarted empty; safe to run beside the worker (idempotent on event_id)."""
    import orjson

    from nearline.embeddings import LiveItemVectors
    from nearline.rebuild import RebuildStats, rebuild_state
    from shared.registry import ModelRegistry
    from shared.storage import factory

    settings = Settings()
    history = factory.open_history(settings.history_url)
    state = factory.open_user_state(
        settings.user_state_url, settings.user_state_ttl_s, settings.recent_items_cap
    )
    try:
        for store in (history, state):
            factory.ping(store)

        def progress(stats: RebuildStats) -> None:
            if not json:
                err_console.print(
                    f"[green]✓[/] {stats.users:,} users, {stats.events:,} events "
                    f"({stats.applied:,} new to the state), {stats.seconds:.1f} s"
                )

        stats = rebuild_state(
            history,
            state,
            vectors=LiveItemVectors(ModelRegistry(settings.registry_url)).current(),
            half_life_s=half_life,
            users=user or None,
            progress=progress,
        )
    finally:
        history.close()
        state.close()
    summary = {
        "users": stats.users,
        "events": stats.events,
        "applied": stats.applied,
        "seconds": stats.seconds,
    }
    if json:
        console.print_json(orjson.dumps(summary).decode())
    else:
        console.print(
            f"rebuilt {stats.users:,} users from {stats.events:,} events "
            f"({stats.applied:,} new to the state) in {stats.seconds:.1f} s"
        )
