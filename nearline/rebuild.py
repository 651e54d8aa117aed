"""Rebuild the fresh per-user state from the event history (``recsys nearline rebuild-state``).

The user state (Redis) is a cache of what the worker folded in; the event history
(Cassandra) keeps every event. When the state is lost (Redis restarted empty, a namespace
dropped), this replays each user's history, oldest first, through the worker's own fold
(:func:`nearline.worker.state_events`, the live bundle's item vectors for the session
vector), so the rebuilt state is the one the worker would have written. Applying is
idempotent on ``event_id``: running it on a state that is not empty, or while the worker
runs, counts nothing twice. Meanwhile the online API serves degraded answers (no recent
items), on time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nearline.embeddings import ItemVectors
from nearline.worker import state_events
from shared.events import Event
from shared.storage.history import EventHistoryStore
from shared.storage.user_state import UserStateStore

# Events of one user read at once: far above what one user does, and bounded.
MAX_EVENTS_PER_USER = 1_000_000


@dataclass
class RebuildStats:
    users: int = 0
    events: int = 0
    applied: int = 0  # events new to the state (the rest it already had)
    seconds: float = 0.0


def rebuild_state(
    history: EventHistoryStore,
    state: UserStateStore,
    *,
    vectors: ItemVectors | None,
    half_life_s: float,
    users: Iterable[str] | None = None,
    batch_users: int = 200,
    progress: Callable[[RebuildStats], None] | None = None,
) -> RebuildStats:
    """Replay the history of ``users`` (default: every user it holds) into ``state``."""
    stats = RebuildStats()
    started = time.perf_counter()
    batch: list[str] = []

    def flush() -> None:
        events: list[Event] = []
        for user in batch:
            # Newest first from the store; the fold wants them in the order they happened.
            events.extend(reversed(history.for_user(user, limit=MAX_EVENTS_PER_USER)))
        stats.users += len(batch)
        stats.events += len(events)
        if events:
            stats.applied += state.apply_events(state_events(events, vectors), half_life_s)
        batch.clear()
        stats.seconds = time.perf_counter() - started
        if progress is not None:
            progress(stats)

    for user in history.users() if users is None else users:
        batch.append(user)
        if len(batch) >= batch_users:
            flush()
    if batch:
        flush()
    stats.seconds = time.perf_counter() - started
    return stats
