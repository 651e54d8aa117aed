"""User and item features: pure pandas/numpy functions behind the offline pipeline's
``features`` step.

:mod:`offline.pipeline.features` calls them from Spark (``groupBy(...).applyInPandas``
over hash buckets of the key) for every user and item of the training part, and writes
the step's ``users`` and ``items`` tables. They hold no Spark code, so they give the same
rows on any frame: one user's history, a Spark group, the whole log;
``tests/integration/test_offline_pipeline.py`` checks that the Spark step's rows equal a
direct call on a few users' and items' rows.

Only the offline tier calls them: nothing in ``online/`` or ``nearline/`` imports this
module, and the ranker does not read these tables. What training and serving share is
the ranker's feature assembly, :func:`shared.ranker.assemble_features`: the offline job
builds its candidates' features with it (:mod:`offline.ranker_training`) and stores them
with the precomputed candidates, which the online tier re-scores as stored; for items the
job did not score, the online tier calls it through :mod:`shared.online_features`.

Every function accepts rows in any order and any grouping of keys (one key, a Spark group,
the whole log), and returns one row per key sorted by key: Spark hands a group's rows over
in no fixed order, so results must not depend on it, down to the last bit of a mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

USER_FEATURE_COLUMNS: tuple[str, ...] = (
    "user_id",
    "n_interactions",
    "n_items",
    "mean_rating",
    "first_timestamp",
    "last_timestamp",
    "recency_s",
)
ITEM_STAT_COLUMNS: tuple[str, ...] = (
    "item_id",
    "n_interactions",
    "n_users",
    "mean_rating",
    "first_timestamp",
    "last_timestamp",
    "recency_s",
)
POPULARITY_COLUMNS: tuple[str, ...] = ("item_id", "popularity_rank", "popularity_percentile")
GENRE_PREFIX = "genre_"


def user_features(interactions: pd.DataFrame, reference_time: int) -> pd.DataFrame:
    """Per-user counts, mean rating, first/last timestamp and recency at ``reference_time``.

    ``interactions`` is a canonical frame (user_id, item_id, rating, timestamp) holding
    any set of users; ``recency_s`` is ``reference_time - last_timestamp`` (seconds; it may
    be negative when events are newer than the reference).
    """
    return _entity_stats(interactions, "user_id", "item_id", "n_items", reference_time)


def item_stats(interactions: pd.DataFrame, reference_time: int) -> pd.DataFrame:
    """Per-item counts, mean rating, first/last timestamp and recency (see user_features)."""
    return _entity_stats(interactions, "item_id", "user_id", "n_users", reference_time)


def popularity(item_counts: pd.DataFrame) -> pd.DataFrame:
    """Popularity rank (1 = most interactions, ties share the best rank) and percentile.

    Needs every item at once (a rank is global), so the pipeline calls it on the collected
    item table, which holds one row per item. ``popularity_percentile`` is the share of
    items with at most this item's count: 1.0 for the most popular, about 1/n for the least.
    """
    counts = item_counts.sort_values("item_id", kind="stable")["n_interactions"]
    n_items = len(counts)
    rank = counts.rank(method="min", ascending=False).astype(np.int64)
    at_most = counts.rank(method="max", ascending=True).to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {
            "item_id": item_counts.sort_values("item_id", kind="stable")["item_id"].to_numpy(),
            "popularity_rank": rank.to_numpy(),
            "popularity_percentile": at_most / n_items if n_items else at_most,
        }
    )


def genre_vocabulary(items: pd.DataFrame) -> tuple[str, ...]:
    """The sorted set of genre names in an items frame (column ``genres``: lists of str)."""
    return tuple(sorted({g for genres in items["genres"] for g in genres}))


def genre_multi_hot(items: pd.DataFrame, vocabulary: Sequence[str]) -> pd.DataFrame:
    """One int8 column ``genre_<name>`` per vocabulary entry: 1 when the item has it.

    Genres outside ``vocabulary`` are ignored, so a model trained on one vocabulary keeps
    its input width when the catalogue later grows a new genre.
    """
    ordered = items.sort_values("item_id", kind="stable")
    position = {name: i for i, name in enumerate(vocabulary)}
    matrix = np.zeros((len(ordered), len(vocabulary)), dtype=np.int8)
    for row, genres in enumerate(ordered["genres"]):
        for name in genres:
            if name in position:
                matrix[row, position[name]] = 1
    out = pd.DataFrame(matrix, columns=[GENRE_PREFIX + name for name in vocabulary])
    out.insert(0, "item_id", ordered["item_id"].astype(str).to_numpy())
    return out


def _entity_stats(
    interactions: pd.DataFrame, key: str, other: str, n_other: str, reference_time: int
) -> pd.DataFrame:
    # Sort first so that sums (hence means) see the same order whatever the caller's order.
    rows = interactions.sort_values([key, "timestamp", other, "rating"], kind="stable")
    grouped = rows.groupby(key, sort=True)
    ratings = rows["rating"].to_numpy(dtype=np.float64)
    out = pd.DataFrame(
        {
            "n_interactions": grouped.size().astype(np.int64),
            n_other: grouped[other].nunique().astype(np.int64),
            # float64 sum of float32 ratings: exact enough, and identical on both paths.
            "mean_rating": pd.Series(ratings, index=rows[key]).groupby(level=0).mean(),
            "first_timestamp": grouped["timestamp"].min().astype(np.int64),
            "last_timestamp": grouped["timestamp"].max().astype(np.int64),
        }
    )
    out["recency_s"] = out["last_timestamp"].rsub(int(reference_time))
    out.index.name = key
    return out.reset_index().astype({key: str})
