"""``recsys demo``: the three tiers on one machine, and a web client to watch them work.

1. **Stores**: the embedded defaults (SQLite files under ``RECSYS_HOME``), or with
   ``--services`` the real Kafka, Redis and Cassandra on 127.0.0.1 (``recsys services up``);
   a ``RECSYS_*_URL`` variable that is set wins over both.
2. **Offline**: unless the registry already has a live bundle (``--retrain`` forces a new
   one), the offline job trains on all of MovieLens 100K (or synthetic data when it is not
   found) with ``--split none``, as a production run does, and promotes the bundle.
3. **Nearline**: each user's last few interactions are replayed as events through the
   event log (idempotent ids: a second start adds nothing), and a nearline worker folds
   every event, replayed or sent from the browser, into the user state and history.
4. **Online**: the API, with the web client at ``/``, on ``--host``/``--port``.

Ctrl+C (or SIGTERM) stops the API, then the worker, which finishes its batch and commits.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import warnings
from dataclasses import dataclass

import pandas as pd

from recsys.console import console, err_console
from shared.data.sources import MOVIELENS_100K, SYNTHETIC
from shared.errors import ConfigError, DataError, ServiceUnavailable
from shared.events import Event, EventType
from shared.settings import Settings

# What --services points the storage roles at (those `recsys services up` starts).
SERVICE_URLS = {
    "RECSYS_EVENT_LOG_URL": "kafka://127.0.0.1:9092/events",
    "RECSYS_USER_STATE_URL": "redis://127.0.0.1:6379/0",
    "RECSYS_CANDIDATES_URL": "cassandra://127.0.0.1:9042/recsys",
    "RECSYS_HISTORY_URL": "cassandra://127.0.0.1:9042/recsys",
}
REPLAY_PER_USER = 5


def say(text: str) -> None:
    """One line on stdout, never wrapped (logs and tests read it whole)."""
    console.print(text, soft_wrap=True)


WORKER_GROUP = "nearline"


@dataclass(frozen=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    services: bool = False
    dataset: str | None = None  # movielens-100k, synthetic; None: ML-100K when found
    synthetic_interactions: int = 100_000
    retrain: bool = False


def run_demo(options: DemoOptions | None = None) -> None:
    options = options or DemoOptions()
    # PySpark warns on each pandas conversion that pandas 3 is not fully supported; the
    # offline tests compare Spark and pandas results exactly, so this is noise here.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
    _check_port(options.host, options.port)
    if options.services:
        for name, url in SERVICE_URLS.items():
            os.environ.setdefault(name, url)
    settings = Settings()
    _check_stores(settings)

    frame, dataset = _data(settings, options)
    version = _bundle(settings, dataset, options.retrain)
    events = replay_events(frame)
    _append(settings, events)
    say(
        f"nearline: replayed the last {REPLAY_PER_USER} events of each user ({len(events):,} events)"
    )

    stop = threading.Event()
    # uvicorn handles SIGINT/SIGTERM while it serves, then raises the signal again for the
    # handlers it found installed: these, so the worker below still finishes and commits.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker = threading.Thread(target=_nearline, args=(settings, stop), name="nearline", daemon=True)
    worker.start()
    try:
        _wait_until_applied(settings, events, worker, stop)
        if not stop.is_set():  # not stopped while waiting
            _serve(settings, options, version)
    finally:
        stop.set()
        worker.join(30)
    say("demo stopped (the nearline worker committed what it had applied)")


def _check_port(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({err.strerror}): pass --port"
            ) from err


def _check_stores(settings: Settings) -> None:
    from shared.storage.factory import open_stores

    stores = open_stores(settings)  # one line naming the role and URL when one is down
    try:
        stores.init_schema()
    finally:
        stores.close()
    kinds = {
        url.split(":", 1)[0]
        for url in (
            settings.event_log_url,
            settings.user_state_url,
            settings.candidates_url,
            settings.history_url,
        )
    }
    where = "embedded stores" if kinds == {"sqlite"} else f"stores: {', '.join(sorted(kinds))}"
    say(f"[bold]tiered-recsys demo[/] on {where} (home {settings.home})")


def _data(settings: Settings, options: DemoOptions) -> tuple[pd.DataFrame, str]:
    """The interactions to train on and replay, and the dataset name the job reads."""
    from shared.data.catalog import DatasetPaths, load_dataset

    found = (settings.movielens_dir / "u.data").is_file()
    dataset = options.dataset or (MOVIELENS_100K if found else SYNTHETIC)
    if dataset == MOVIELENS_100K and not found:
        raise DataError(
            f"MovieLens 100K not found in {settings.movielens_dir}: set RECSYS_MOVIELENS_DIR or"
            " run `recsys data download movielens-100k` (or use --dataset synthetic)"
        )
    if dataset == SYNTHETIC:
        _ensure_synthetic(settings, options.synthetic_interactions)
    elif dataset != MOVIELENS_100K:
        raise DataError(f"--dataset {dataset!r}: use {MOVIELENS_100K} or {SYNTHETIC}")
    if dataset == MOVIELENS_100K and options.dataset is None:
        say(f"data: MovieLens 100K from {settings.movielens_dir}")
    frame, label = load_dataset(
        dataset, DatasetPaths(settings.movielens_dir, settings.datasets_dir)
    )
    say(f"data: {label}, {len(frame):,} interactions")
    return frame, dataset


def _ensure_synthetic(settings: Settings, interactions: int) -> None:
    from shared.data.synthetic_io import is_synthetic_dir, write_synthetic

    target = settings.datasets_dir / SYNTHETIC
    if not is_synthetic_dir(target):
        say(
            f"data: MovieLens 100K not found in {settings.movielens_dir} (set RECSYS_MOVIELENS_DIR"
            " or run `recsys data download movielens-100k`); generating synthetic data"
        )
        write_synthetic(target, interactions, None, None, seed=7)


def _bundle(settings: Settings, dataset: str, retrain: bool) -> str:
    """The live bundle, trained now when there is none (or ``retrain``)."""
    from shared.registry import ModelRegistry

    live = ModelRegistry(settings.registry_url).live()
    if live is not None and not retrain and _has_candidates(settings, live.version):
        say(
            f"offline: serving the live bundle {live.version} (trained"
            f" {time.strftime('%Y-%m-%d %H:%M', time.gmtime(live.created_at))} UTC);"
            " --retrain trains a new one"
        )
        return live.version
    return _train(settings, dataset)


def _has_candidates(settings: Settings, version: str) -> bool:
    from shared.storage.factory import open_candidates

    store = open_candidates(settings.candidates_url)
    try:
        return version in {v.version for v in store.versions()}
    finally:
        store.close()


def _train(settings: Settings, dataset: str) -> str:
    from offline.job import run_offline
    from offline.pipeline.split import SplitParams
    from offline.spec import JobSpec
    from recsys.offline_inputs import dataset_items

    say(
        "offline: training on everything (Spark pipeline, generators, ranker, FAISS index):"
        " a few minutes on two cores"
    )
    spec = JobSpec(
        source=dataset,
        label=dataset,
        split=SplitParams(kind="none"),
        items=dataset_items(settings, dataset),
        candidates_per_user=settings.candidates_per_user,
    )

    def progress(step: str, seconds: float, detail: str) -> None:
        err_console.print(f"[green]✓[/] {step:<11} {seconds:7.1f}s  {detail}", soft_wrap=True)

    result = run_offline(settings, spec, progress)
    say(f"offline: bundle {result.version} promoted")
    return result.version


def replay_events(frame: pd.DataFrame, per_user: int = REPLAY_PER_USER) -> list[Event]:
    """Each user's last ``per_user`` interactions as events with deterministic ids."""
    recent = (
        frame.sort_values(["user_id", "timestamp"], kind="stable").groupby("user_id").tail(per_user)
    )
    rows = zip(
        recent["user_id"].astype(str).tolist(),
        recent["item_id"].astype(str).tolist(),
        recent["rating"].astype(float).tolist(),
        recent["timestamp"].astype(float).tolist(),
        strict=True,
    )
    return [
        Event(
            event_id=f"replay-{user}-{item}-{int(ts)}",
            user_id=user,
            item_id=item,
            type=EventType.RATE,
            value=rating,
            timestamp=ts,
            context={"source": "demo-replay"},
        )
        for user, item, rating, ts in rows
    ]


def _append(settings: Settings, events: list[Event]) -> None:
    from shared.storage.factory import open_event_log

    log = open_event_log(settings.event_log_url)
    try:
        log.append([(e.user_id, e.to_json()) for e in events])
    finally:
        log.close()


def _wait_until_applied(
    settings: Settings,
    events: list[Event],
    worker: threading.Thread,
    stop: threading.Event,
    timeout_s: float = 600.0,
) -> None:
    """Serve only once the worker has folded the replay into the user state, so the first
    play on the page is not queued behind it: each user's newest replayed item is there."""
    from shared.storage.factory import open_user_state

    newest = {e.user_id: e.item_id for e in events}  # events are in time order per user
    started = time.perf_counter()
    state = open_user_state(
        settings.user_state_url, settings.user_state_ttl_s, settings.recent_items_cap
    )
    try:
        while newest and worker.is_alive() and not stop.is_set():
            if time.perf_counter() - started > timeout_s:
                raise ServiceUnavailable(
                    "user_state",
                    settings.user_state_url,
                    f"the nearline worker applied the replay for only"
                    f" {len(events) - len(newest):,} of {len(events):,} events in {timeout_s:.0f} s",
                )
            for user in list(newest):
                found = state.get(user)
                if found is not None and newest[user] in found.recent_items:
                    del newest[user]
            if newest:
                time.sleep(0.25)
    finally:
        state.close()
    if newest and not stop.is_set():
        raise ServiceUnavailable(
            "user_state", settings.user_state_url, "the nearline worker stopped (see above)"
        )
    seconds = time.perf_counter() - started
    say(f"nearline: the worker applied the replay to the user state in {seconds:.1f} s")


def _nearline(settings: Settings, stop: threading.Event) -> None:
    """The nearline worker, in this process, until ``stop``."""
    from nearline.metrics import NearlineMetrics
    from nearline.worker import WorkerConfig
    from recsys.nearline_cli import opened_worker

    config = WorkerConfig(group_id=WORKER_GROUP, poll_timeout_s=0.05)
    try:
        with opened_worker(settings, config, NearlineMetrics()) as worker:
            worker.run(stop)
    except Exception as err:  # the API keeps serving; the page says events are not applied
        err_console.print(
            f"[red]nearline worker stopped:[/] {type(err).__name__}: {err}", soft_wrap=True
        )


def _serve(settings: Settings, options: DemoOptions, version: str) -> None:
    import uvicorn

    from nearline.api import protect
    from nearline.api import router as events_router
    from online.app import create_app
    from recsys.online_cli import _THREADS_ENV, limit_threads

    limit_threads(int(os.environ.get(_THREADS_ENV, "1")))  # as `recsys online serve` does
    app = create_app(settings, routers=[events_router])
    protect(app, settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host=options.host, port=options.port, log_level="warning")
    )

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            say(
                f"[bold green]demo ready:[/] open http://{options.host}:{options.port}/"
                f" (bundle {version}; API docs at /docs; Ctrl+C stops)"
            )

    threading.Thread(target=announce, name="announce", daemon=True).start()
    server.run()
