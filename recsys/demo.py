"""``recsys demo``: what exists so far, end to end on the embedded defaults.

Today that is the data layer and the storage roles: the demo loads MovieLens 100K (or
synthetic data), replays its latest interactions as events through the event log, and
folds them into the event history exactly as the nearline tier will, idempotently, so a
second run changes nothing. The tiers (issues 3 to 6) extend it into the full demo.
"""

from __future__ import annotations

import time

import pandas as pd
from rich.table import Table

from recsys.console import console
from shared.data.movielens import load_ratings
from shared.data.stats import describe_interactions
from shared.data.synthetic import generate
from shared.events import Event, EventType
from shared.settings import Settings
from shared.storage.factory import Stores, open_stores

REPLAYED = 2_000
GROUP = "demo"


def _load(settings: Settings) -> tuple[pd.DataFrame, str]:
    if (settings.movielens_dir / "u.data").is_file():
        return load_ratings(settings.movielens_dir), f"MovieLens 100K ({settings.movielens_dir})"
    console.print(
        f"MovieLens 100K not found in {settings.movielens_dir} (set RECSYS_MOVIELENS_DIR or run"
        " `recsys data download movielens-100k`); using synthetic data"
    )
    return generate(100_000, seed=7).interactions, "synthetic (100,000 interactions, seed 7)"


def _as_events(frame: pd.DataFrame) -> list[Event]:
    columns = zip(
        frame["user_id"].tolist(),
        frame["item_id"].tolist(),
        frame["rating"].tolist(),
        frame["timestamp"].tolist(),
        strict=True,
    )
    return [
        Event(
            event_id=f"demo-{user}-{item}-{timestamp}",
            user_id=user,
            item_id=item,
            type=EventType.RATE,
            value=float(rating),
            timestamp=float(timestamp),
            context={"source": "demo-replay"},
        )
        for user, item, rating, timestamp in columns
    ]


def _replay(stores: Stores, events: list[Event]) -> tuple[int, float]:
    """Events -> event log -> consumer -> history; returns (records consumed, seconds)."""
    started = time.perf_counter()
    stores.event_log.append([(e.user_id, e.to_json()) for e in events])
    consumer = stores.event_log.consumer(GROUP)
    consumed = 0
    try:
        while batch := consumer.poll(max_records=500, timeout_s=0.2):
            stores.history.append([Event.from_json(r.value) for r in batch])
            consumer.commit()  # only after the write succeeded: at-least-once, idempotent
            consumed += len(batch)
    finally:
        consumer.close()
    return consumed, time.perf_counter() - started


def run_demo(settings: Settings | None = None) -> None:
    """Load data, replay recent interactions through the storage roles, show one user."""
    settings = settings or Settings()
    frame, source = _load(settings)
    stats = describe_interactions(frame, source)
    console.print(
        f"[bold]{source}[/]: {stats.interactions:,} interactions, {stats.users:,} users,"
        f" {stats.items:,} items, density {stats.density:.4f}, {stats.time_range}"
    )
    stores = open_stores(settings)
    try:
        stores.init_schema()
        recent = frame.sort_values("timestamp", kind="stable").tail(REPLAYED)
        consumed, seconds = _replay(stores, _as_events(recent))
        user = str(recent["user_id"].value_counts().index[0])
        history = stores.history.for_user(user, limit=5)
    finally:
        stores.close()
    table = Table("time (UTC)", "item", "event", "value", title=f"latest events of user {user}")
    for e in history:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.timestamp))
        table.add_row(stamp, e.item_id, e.type.value, f"{e.value:g}" if e.value is not None else "")
    console.print(table)
    console.print(
        f"replayed {len(recent):,} events through the event log; consumed {consumed:,} new"
        f" records into the event history in {seconds:.2f} s (stores under {settings.home}/)."
        " The offline, nearline and online tiers come next."
    )
