"""User state role: fresh per-user state written by the nearline tier, read online.

Real implementation: Redis. Embedded: SQLite. State expires ``ttl_s`` seconds after the
user's last update, so inactive users cost nothing.

The nearline tier writes through :meth:`UserStateStore.apply_events`, which is idempotent
per ``event_id``: each user's state remembers the ids of their last ``DEDUPE_WINDOW`` applied
events and folds an event in only if its id is not among them, in the same atomic step as
the counters and lists it changes. A batch delivered twice (at-least-once) therefore counts
once. :func:`fold_events` is the reference semantics every implementation matches.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from shared.storage.base import Store

Vector = npt.NDArray[np.float32]

# Ids of each user's last applied events kept for deduplication. A replay only ever covers
# events not yet committed in the log, so the window must exceed what a worker holds
# uncommitted for one user (the worker checks its settings against it).
DEDUPE_WINDOW = 8192  # covers a nearline replay: 2 x (commit_records + poll_records) = 6,000


@dataclass(slots=True)
class UserState:
    """What we know about a user right now."""

    user_id: str
    recent_items: list[str] = field(default_factory=list)  # most recent first
    counters: dict[str, int] = field(default_factory=dict)  # events per type
    session_vector: Vector | None = None
    last_active: float | None = None  # epoch seconds


@dataclass(slots=True)
class UserStateUpdate:
    """A change to one user's state; many are applied in one round trip."""

    user_id: str
    new_items: Sequence[str] = ()  # oldest first, as the events happened
    counter_increments: Mapping[str, int] = field(default_factory=dict)
    session_vector: Vector | None = None  # replaces the stored one when given
    last_active: float | None = None


class RecentEntry(NamedTuple):
    """One item on a user's recent list, with what orders it: newest first by
    ``(timestamp, event_id)``, so the list is the same whatever order the events arrive in
    (a rebuild from the history while the worker writes, a replay)."""

    timestamp: float
    event_id: str
    item_id: str


class StateEvent(NamedTuple):
    """One event as the user state sees it; applied at most once per ``event_id``."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    timestamp: float  # epoch seconds
    vector: Vector | None = None  # the item's embedding, when the live bundle knows it
    recent: bool = True  # whether the item enters the user's recent items


@dataclass(slots=True)
class Session:
    """A time-decayed mean of item vectors: ``mean`` with total ``weight`` as of ``ref_time``.

    Every vector counts with weight ``2 ** ((t - ref_time) / half_life)``, so the mean equals
    ``sum(2**(t_i/h) v_i) / sum(2**(t_i/h))``: the result does not depend on the order the
    events arrive in, and an event older than the newest one simply counts for less.
    """

    mean: npt.NDArray[np.float64]
    weight: float
    ref_time: float

    def fold(self, timestamp: float, vector: npt.NDArray[np.float64], half_life_s: float) -> None:
        decay = math.log(2) / half_life_s
        if timestamp > self.ref_time:
            self.weight *= math.exp(-decay * (timestamp - self.ref_time))
            self.ref_time = timestamp
            w = 1.0
        else:
            w = math.exp(-decay * (self.ref_time - timestamp))
        total = self.weight + w
        self.mean = (self.mean * self.weight + vector * w) / total
        self.weight = total


def fold_events(
    state: UserState,
    session: Session | None,
    seen: list[str],
    recent: list[RecentEntry],
    events: Sequence[StateEvent],
    *,
    recent_cap: int,
    half_life_s: float,
    window: int = DEDUPE_WINDOW,
) -> tuple[Session | None, int]:
    """Reference semantics of ``apply_events`` for one user, in place; returns the new count.

    ``seen`` holds the ids already applied, oldest first, and is trimmed to ``window``.
    ``recent`` holds the recent list's entries, newest first (``state.recent_items`` is
    their items). A session whose dimension differs from an event's vector (a new bundle)
    starts afresh. Every part of the result but that restart is independent of the order of
    the events: counters add up, last active is the newest time, the session vector is a
    time-decayed mean and the recent list is ordered by time (then event id), so events
    applied out of order, or the history replayed into a state the worker has written since,
    give the state an in-order run would have.
    """
    known = set(seen)
    applied = 0
    pushed: list[RecentEntry] = []
    for event in events:
        if event.event_id in known:
            continue
        known.add(event.event_id)
        seen.append(event.event_id)
        applied += 1
        state.counters[event.type] = state.counters.get(event.type, 0) + 1
        if event.recent:
            pushed.append(RecentEntry(event.timestamp, event.event_id, event.item_id))
        if state.last_active is None or event.timestamp > state.last_active:
            state.last_active = event.timestamp
        if event.vector is not None:
            vector = np.asarray(event.vector, dtype=np.float64)
            if session is None or session.mean.shape != vector.shape:
                session = Session(np.zeros_like(vector), 0.0, event.timestamp)
            session.fold(event.timestamp, vector, half_life_s)
    del seen[: max(0, len(seen) - window)]
    if pushed:
        recent[:] = merge_recent(recent, pushed, recent_cap)
    state.recent_items = [entry.item_id for entry in recent]
    if session is not None:
        state.session_vector = session.mean.astype(np.float32)
    return session, applied


def merge_recent(
    previous: Sequence[RecentEntry], new: Sequence[RecentEntry], cap: int
) -> list[RecentEntry]:
    """The ``cap`` newest entries of both, newest first by ``(timestamp, event_id)``.

    This is the reference semantics every implementation must match: an item seen again
    appears again (a rewatch is a signal), and the oldest fall off the end.
    """
    return sorted([*previous, *new], reverse=True)[:cap]


def pushed_entries(items: Sequence[str], at: float) -> list[RecentEntry]:
    """Entries for items pushed without events (:meth:`UserStateStore.apply`), oldest first:
    they happened at ``at``, in the order given, after any event at the same time."""
    return [RecentEntry(at, f"~{j:06d}", item) for j, item in enumerate(items)]


class UserStateStore(Store):
    """Read and update users' fresh state."""

    role = "user state"

    def __init__(self, url: str, ttl_s: int, recent_cap: int) -> None:
        super().__init__(url)
        self.ttl_s = ttl_s
        self.recent_cap = recent_cap
        self.dedupe_window = DEDUPE_WINDOW  # applied ids remembered per user

    @abstractmethod
    def apply(self, updates: Sequence[UserStateUpdate]) -> None:
        """Apply all updates in one round trip; each refreshes the user's TTL."""

    @abstractmethod
    def apply_events(self, events: Sequence[StateEvent], half_life_s: float) -> int:
        """Fold events into their users' state in one round trip, each at most once.

        Per new event: its type's counter +1, its item pushed on the recent items (when
        ``recent``), last active = the newest timestamp, its vector folded into the session
        vector (a time-decayed mean, see :class:`Session`). Events whose id was already
        applied change nothing. Returns how many events were new.
        """

    @abstractmethod
    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        """States of the users that have one (unknown or expired users are absent)."""

    def get(self, user_id: str) -> UserState | None:
        """State of one user, or None."""
        return self.get_many([user_id]).get(user_id)

    # A store whose client can read without blocking says so here and implements ``aget``:
    # the online tier then reads on its event loop instead of hopping to a thread per request.
    reads_async = False

    async def aget(self, user_id: str) -> UserState | None:
        """:meth:`get` without blocking the event loop (only where ``reads_async``)."""
        raise NotImplementedError(f"{type(self).__name__} has no non-blocking read")

    async def aclose(self) -> None:
        """Release what :meth:`aget` opened on the running event loop (nothing here)."""

    @abstractmethod
    def delete(self, user_id: str) -> None:
        """Forget a user (e.g. on a privacy request)."""
