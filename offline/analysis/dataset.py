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


def occupancy_grid(df: pd.DataFrame, bins: int = 100) -> npt.NDArray[np.float64]:
    """Share of filled user x item cells in ``[bins, bins]`` blocks, users sorted by activity
    (rows, most active first) and items by popularity (columns, most popular first): the
    shape of the sparsity, readable at any size where a scatter of every cell is not."""
    pairs = df[["user_id", "item_id"]].drop_duplicates()
    user_rank = _rank_of(counts_per(pairs, "user_id"))
    item_rank = _rank_of(counts_per(pairs, "item_id"))
    n_users, n_items = len(user_rank), len(item_rank)
    rows = user_rank.reindex(pairs["user_id"]).to_numpy() * bins // max(n_users, 1)
    cols = item_rank.reindex(pairs["item_id"]).to_numpy() * bins // max(n_items, 1)
    filled = np.zeros((bins, bins), dtype=np.float64)
    np.add.at(filled, (rows, cols), 1.0)
    users_per_bin = np.bincount(np.arange(n_users) * bins // max(n_users, 1), minlength=bins)
    items_per_bin = np.bincount(np.arange(n_items) * bins // max(n_items, 1), minlength=bins)
    cells = np.outer(users_per_bin, items_per_bin).astype(np.float64)
    return np.divide(filled, cells, out=np.zeros_like(filled), where=cells > 0)


def _rank_of(counts: pd.Series) -> pd.Series:
    """0-based position of each id in ``counts`` (already sorted, largest first)."""
    return pd.Series(np.arange(len(counts)), index=counts.index)


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
