"""Candidate role: top-N candidates per user, precomputed offline, read online.

Real implementation: Cassandra. Embedded: SQLite. Rows are written in bulk under a version
(the model bundle's) and become visible only when that version is activated in one switch,
so readers never see a half-written version.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from shared.errors import RecsysError
from shared.storage.base import Store


class UnknownVersion(RecsysError):
    """A candidate version that was never written (or was dropped)."""


@dataclass(frozen=True, slots=True)
class Candidates:
    """One user's candidates under one version, best first."""

    user_id: str
    items: list[str]
    scores: list[float]
    sources: list[str] = field(default_factory=list)  # generator that proposed each item
    # The ranker's input features of each item, [items, features] float32 in the order of
    # the bundle's ranker spec: the online tier re-scores with exactly what offline saw.
    # Compared separately (numpy arrays have no single truth value).
    features: npt.NDArray[np.float32] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.scores) != len(self.items):
            raise ValueError(
                f"user {self.user_id}: {len(self.items)} items, {len(self.scores)} scores"
            )
        if self.sources and len(self.sources) != len(self.items):
            raise ValueError(
                f"user {self.user_id}: {len(self.items)} items, {len(self.sources)} sources"
            )
        if self.features is not None and (
            self.features.ndim != 2 or self.features.shape[0] != len(self.items)
        ):
            raise ValueError(
                f"user {self.user_id}: {len(self.items)} items, features {self.features.shape}"
            )


def encode_features(features: npt.NDArray[np.float32] | None) -> bytes | None:
    """Row-major little-endian float32 bytes (what the stores keep), or None."""
    if features is None:
        return None
    return np.ascontiguousarray(features, dtype="<f4").tobytes()


def decode_features(blob: bytes | None, n_items: int) -> npt.NDArray[np.float32] | None:
    """The inverse of :func:`encode_features` for a list of ``n_items`` items."""
    if not blob or n_items == 0:
        return None
    flat = np.frombuffer(blob, dtype="<f4")
    if flat.size % n_items:
        raise ValueError(f"candidate features: {flat.size} values for {n_items} items")
    return flat.reshape(n_items, -1).astype(np.float32)


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """A written candidate version."""

    version: str
    rows: int  # rows written under it (a user written twice counts twice)
    live: bool


class CandidateStore(Store):
    """Versioned candidate lists with one live version."""

    role = "candidates"

    @abstractmethod
    def write(self, version: str, rows: Iterable[Candidates]) -> int:
        """Write rows under ``version`` (not yet live); returns how many. May be called repeatedly."""

    @abstractmethod
    def activate(self, version: str) -> None:
        """Make ``version`` the live one in one switch; raises ``UnknownVersion``."""

    @abstractmethod
    def live_version(self) -> str | None:
        """The version readers get by default."""

    @abstractmethod
    def get(self, user_id: str, version: str | None = None) -> Candidates | None:
        """A user's candidates under ``version`` (default: the live one)."""

    # A store whose client reads without a thread of the caller's says so here and
    # overrides ``aget``: the online tier then awaits it on its event loop.
    reads_async = False

    async def aget(self, user_id: str, version: str | None = None) -> Candidates | None:
        """:meth:`get` without blocking the event loop: here, in a thread of its own."""
        return await asyncio.to_thread(self.get, user_id, version)

    @abstractmethod
    def scan(self, version: str, limit: int | None = None) -> Iterator[Candidates]:
        """Every user's candidates under ``version`` (at most ``limit`` users), in the
        store's own order, read page by page and lazily: no I/O before the first row is
        asked for (the online tier creates it on its event loop and reads it in its store
        pool when a bundle loads). An unknown version yields nothing."""

    @abstractmethod
    def versions(self) -> list[VersionInfo]:
        """Every written version, oldest first."""

    @abstractmethod
    def drop(self, version: str) -> None:
        """Delete a version's rows; the live version cannot be dropped."""
