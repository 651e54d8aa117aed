"""Summary statistics of an interactions frame (what ``recsys data info`` prints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

# Ratings with at most this many distinct values are counted value by value; beyond
# that (continuous weights) they are put into equal-width bins.
_MAX_DISTINCT_RATINGS = 20
_BINS = 10


@dataclass(frozen=True)
class InteractionStats:
    """Counts, density, time range and rating histogram of one dataset."""

    source: str
    interactions: int
    users: int
    items: int
    density: float  # interactions / (users * items)
    first_timestamp: int | None
    last_timestamp: int | None
    ratings: dict[str, int]  # rating value (or bin "[a, b)") -> count

    @property
    def time_range(self) -> str:
        """``first .. last`` as UTC ISO dates, or "-" for an empty dataset."""
        if self.first_timestamp is None or self.last_timestamp is None:
            return "-"
        return f"{_iso(self.first_timestamp)} .. {_iso(self.last_timestamp)}"

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict, with the time range spelled out too."""
        return {**asdict(self), "time_range": self.time_range}


def describe_interactions(df: pd.DataFrame, source: str) -> InteractionStats:
    """Summarise a canonical interactions frame."""
    n = len(df)
    users = int(df["user_id"].nunique())
    items = int(df["item_id"].nunique())
    timestamps = df["timestamp"].to_numpy()
    return InteractionStats(
        source=source,
        interactions=n,
        users=users,
        items=items,
        density=n / (users * items) if users and items else 0.0,
        first_timestamp=int(timestamps.min()) if n else None,
        last_timestamp=int(timestamps.max()) if n else None,
        ratings=rating_histogram(df["rating"].to_numpy()),
    )


def rating_histogram(ratings: np.ndarray) -> dict[str, int]:
    """Count per distinct rating, or per bin when ratings are (nearly) continuous."""
    values, counts = np.unique(ratings, return_counts=True)
    if len(values) <= _MAX_DISTINCT_RATINGS:
        return {_number(v): int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}
    binned, edges = np.histogram(ratings, bins=_BINS)
    return {
        f"[{_number(lo)}, {_number(hi)})": int(c)
        for lo, hi, c in zip(edges[:-1].tolist(), edges[1:].tolist(), binned.tolist(), strict=True)
    }


def _number(value: float) -> str:
    return f"{value:g}"


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
