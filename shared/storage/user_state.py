"""User state role: fresh per-user state written by the nearline tier, read online.

Real implementation: Redis. Embedded: SQLite. State expires ``ttl_s`` seconds after the
user's last update, so inactive users cost nothing.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from shared.storage.base import Store

Vector = npt.NDArray[np.float32]


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


def merge_recent(previous: Sequence[str], new_items: Sequence[str], cap: int) -> list[str]:
    """Most-recent-first list after ``new_items`` happened, capped at ``cap``.

    This is the reference semantics every implementation must match: an item seen again
    appears again (a rewatch is a signal), and the oldest fall off the end.
    """
    return [*reversed(new_items), *previous][:cap]


class UserStateStore(Store):
    """Read and update users' fresh state."""

    role = "user state"

    def __init__(self, url: str, ttl_s: int, recent_cap: int) -> None:
        super().__init__(url)
        self.ttl_s = ttl_s
        self.recent_cap = recent_cap

    @abstractmethod
    def apply(self, updates: Sequence[UserStateUpdate]) -> None:
        """Apply all updates in one round trip; each refreshes the user's TTL."""

    @abstractmethod
    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        """States of the users that have one (unknown or expired users are absent)."""

    def get(self, user_id: str) -> UserState | None:
        """State of one user, or None."""
        return self.get_many([user_id]).get(user_id)

    @abstractmethod
    def delete(self, user_id: str) -> None:
        """Forget a user (e.g. on a privacy request)."""
