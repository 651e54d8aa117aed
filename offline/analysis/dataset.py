"""What an interactions frame looks like: activity over time, popularity, users, sparsity.

Input is the canonical frame of :mod:`shared.data.frame` (``user_id``, ``item_id``,
``rating``, ``timestamp`` in epoch seconds); counts and density come from
:func:`shared.data.stats.describe_interactions`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.data.stats import describe_interactions


def activity_over_time(df: pd.DataFrame, freq: str = "W") -> pd.DataFrame:
    """Per period (pandas frequency, weeks by default, labelled by its start): interactions,
    active users, and users seen for the first time."""
    when = pd.to_datetime(df["timestamp"], unit="s", utc=True).dt.tz_localize(None)
    period = when.dt.to_period(freq).dt.start_time
    first_seen = period.groupby(df["user_id"]).transform("min")
    frame = pd.DataFrame({"period": period, "user_id": df["user_id"], "new": period == first_seen})
    grouped = frame.groupby("period")
    out = pd.DataFrame(
        {
            "interactions": grouped.size(),
            "active_users": grouped["user_id"].nunique(),
            "new_users": frame[frame["new"]].groupby("period")["user_id"].nunique(),
        }
    )
    return out.fillna(0).astype(np.int64)


def counts_per(df: pd.DataFrame, column: str) -> pd.Series:
    """Interactions per user or per item (``column``), largest first."""
    return df.groupby(column).size().sort_values(ascending=False, kind="stable")


def cumulative_share(counts: pd.Series | npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Share of all interactions held by the top 1, 2, ... entries (counts sorted descending)."""
    values = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    total = values.sum()
    return np.cumsum(values) / total if total else np.zeros(len(values))


def gini(counts: pd.Series | npt.NDArray[np.int64]) -> float:
    """Gini coefficient of the counts: 0 when all are equal, towards 1 when one holds all."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(values), values.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * values).sum()) / (n * total) - (n + 1) / n)


def head_items(counts: pd.Series, share: float) -> int:
    """How many of the most popular entries hold ``share`` of all interactions."""
    return int(np.searchsorted(cumulative_share(counts), share - 1e-12) + 1)


def summary(df: pd.DataFrame, source: str) -> pd.Series:
    """One column of headline figures: counts, density and sparsity, medians, Gini, head."""
    stats = describe_interactions(df, source)
    items = counts_per(df, "item_id")
    users = counts_per(df, "user_id")
    return pd.Series(
        {
            "interactions": stats.interactions,
            "users": stats.users,
            "items": stats.items,
            "density": stats.density,
            "sparsity": 1.0 - stats.density,
            "time range": stats.time_range,
            "median interactions per user": float(users.median()),
            "median interactions per item": float(items.median()),
            "item popularity Gini": gini(items),
            "items holding half the interactions": head_items(items, 0.5),
        },
        name=source,
        dtype=object,
    )
