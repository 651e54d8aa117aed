"""The ``features`` step: user and item features of the training part, via shared.features.

Spark only moves data: ``groupBy(...).applyInPandas`` hands each bucket of keys to the
pure functions in :mod:`shared.features`, which return the same rows for any grouping of
the keys (one user, a bucket, the whole log). Popularity ranks and genre columns need the
whole item table at once; it holds one row per item, so they run on the collected table.

The tables are the step's outputs in the pipeline's work folder; the online tier does not
compute them (the feature code training and serving share is the ranker's,
:func:`shared.ranker.assemble_features`; see :mod:`shared.features`).

The reference time for recency defaults to the last training timestamp, not the wall
clock, so that rerunning the step on the same data gives the same features (and hits the
cache).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as sf

from offline.pipeline.dag import Step, StepContext
from shared.features import (
    genre_multi_hot,
    genre_vocabulary,
    item_stats,
    popularity,
    user_features,
)

CODE_VERSION = "features/2"
# Rows go to the pure functions in this many hash buckets of the key, not one call per
# user or item: each call costs ~18 ms of fixed pandas overhead, so one group per key made
# this step 9x slower (measured with 1,112 users) and linear in the number of keys. The
# functions accept any set of keys and sort their output, so the result is the same.
FEATURE_BUCKETS = 64
USER_SCHEMA = (
    "user_id string, n_interactions long, n_items long, mean_rating double,"
    " first_timestamp long, last_timestamp long, recency_s long"
)
ITEM_STATS_SCHEMA = (
    "item_id string, n_interactions long, n_users long, mean_rating double,"
    " first_timestamp long, last_timestamp long, recency_s long"
)


def features_step(reference_time: int | None, items: pd.DataFrame | None) -> Step:
    """The features step reading ``split``'s ``train``; tables ``users`` and ``items``.

    ``items`` (item_id, genres: list of str), when given, adds ``genre_<name>`` columns.
    """
    vocabulary = genre_vocabulary(items) if items is not None else ()
    params: dict[str, Any] = {"reference_time": reference_time, "genres": list(vocabulary)}
    if items is not None:
        params["items_sha256"] = _items_digest(items)

    def body(ctx: StepContext) -> tuple[dict[str, DataFrame], dict[str, Any]]:
        # The pure functions read these four columns; source_row would only be shipped to
        # the Python workers (twice, users and items) and thrown away there.
        train = ctx.read("split", "train").select("user_id", "item_id", "rating", "timestamp")
        ref = reference_time
        if ref is None:
            ref = int(train.agg(sf.max("timestamp")).collect()[0][0])
        at = int(ref)

        # Annotated wrappers, not functools.partial: Spark reads the type hints.
        def users_of(group: pd.DataFrame) -> pd.DataFrame:
            return user_features(group, at)

        def items_of(group: pd.DataFrame) -> pd.DataFrame:
            return item_stats(group, at)

        users = train.groupBy(_bucket("user_id")).applyInPandas(users_of, schema=USER_SCHEMA)
        stats = (
            train.groupBy(_bucket("item_id"))
            .applyInPandas(items_of, schema=ITEM_STATS_SCHEMA)
            .toPandas()
            .sort_values("item_id", kind="stable")
            .reset_index(drop=True)
        )
        table = stats.merge(popularity(stats), on="item_id", how="left")
        if items is not None:
            hot = genre_multi_hot(items, vocabulary)
            table = table.merge(hot, on="item_id", how="left")
            genre_columns = list(hot.columns[1:])
            # Items missing from the metadata get no genre rather than a null.
            table[genre_columns] = table[genre_columns].fillna(0).astype("int8")
        return {"users": users, "items": ctx.spark.createDataFrame(table)}, {"reference_time": ref}

    return Step("features", body, CODE_VERSION, inputs=("split",), params=params)


def _bucket(key: str) -> Column:
    return sf.pmod(sf.hash(key), sf.lit(FEATURE_BUCKETS)).alias(f"_{key}_bucket")


def _items_digest(items: pd.DataFrame) -> str:
    text = "\n".join(
        f"{item}\t{'|'.join(sorted(genres))}"
        for item, genres in sorted(zip(items["item_id"].astype(str), items["genres"], strict=True))
    )
    return hashlib.sha256(text.encode()).hexdigest()
