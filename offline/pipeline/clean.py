"""The ``clean`` step: drop malformed rows and duplicates, apply minimum counts; count all.

Every dropped row is counted under exactly one reason in the manifest's ``drops``:

* malformed, judged in this order (a row with two faults counts under the first):
  ``null_user_id`` (null or blank), ``null_item_id``, ``bad_rating`` (null or NaN),
  ``rating_out_of_range`` (outside ``[rating_min, rating_max]``), ``bad_timestamp``
  (null or negative);
* ``duplicate``: same (user, item, timestamp) as an earlier row; the first in source
  order is kept, as pandas' ``drop_duplicates`` would;
* ``user_min_count`` / ``item_min_count``: users or items with fewer interactions than
  the minimum. Dropping a user can push an item under its minimum and vice versa, so by
  default the two filters alternate to a fixed point (both minimums hold in the output,
  which is what later steps assume); ``fixed_point=False`` applies each filter once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as sf

from offline.pipeline.dag import AfterWrite, Step, StepContext
from shared.errors import DataError

CODE_VERSION = "clean/1"
MALFORMED_REASONS = (
    "null_user_id",
    "null_item_id",
    "bad_rating",
    "rating_out_of_range",
    "bad_timestamp",
)
DROP_REASONS = (*MALFORMED_REASONS, "duplicate", "user_min_count", "item_min_count")


@dataclass(frozen=True)
class CleanParams:
    """What ``clean`` keeps. The defaults drop only malformed rows and duplicates."""

    min_user_interactions: int = 1
    min_item_interactions: int = 1
    rating_min: float = 0.0
    rating_max: float | None = None
    fixed_point: bool = True
    max_rounds: int = 20  # a cap, so a pathological input cannot loop for long


def clean_step(params: CleanParams) -> Step:
    """The clean step reading ``ingest``'s ``interactions``."""

    def body(ctx: StepContext) -> tuple[dict[str, DataFrame], dict[str, Any]]:
        return _clean(ctx.read("ingest", "interactions"), params)

    return Step("clean", body, CODE_VERSION, inputs=("ingest",), params=asdict(params))


def _clean(raw: DataFrame, params: CleanParams) -> tuple[dict[str, DataFrame], dict[str, Any]]:
    drops = dict.fromkeys(DROP_REASONS, 0)
    tagged = raw.withColumn("_drop", _drop_reason(params))
    rows_in = 0
    for row in tagged.groupBy("_drop").count().collect():
        rows_in += int(row["count"])
        if row["_drop"] is not None:
            drops[row["_drop"]] = int(row["count"])
    valid = tagged.filter(sf.col("_drop").isNull()).drop("_drop")
    first = Window.partitionBy("user_id", "item_id", "timestamp").orderBy("source_row")
    deduped = valid.withColumn("_n", sf.row_number().over(first)).filter(sf.col("_n") == 1)
    deduped = deduped.drop("_n")
    malformed = sum(drops[r] for r in MALFORMED_REASONS)
    if params.min_user_interactions <= 1 and params.min_item_interactions <= 1:
        # Nothing to iterate: the runner writes the deduplicated rows in one pass and its
        # count of the written files gives the duplicates. Materialising them first
        # (localCheckpoint + count) cost a second pass and held 20M rows in the JVM heap.
        def drops_after(rows: Mapping[str, int]) -> dict[str, int]:
            out = {**drops, "duplicate": rows_in - malformed - rows["interactions"]}
            _check_rows_left(rows_in, out, rows["interactions"])
            return out

        info: dict[str, Any] = {
            "rows_in": rows_in,
            "rows_out": AfterWrite(lambda rows: rows["interactions"]),
            "drops": AfterWrite(drops_after),
            "rounds": 0,
            "converged": True,
        }
        return {"interactions": deduped}, info
    current = deduped.localCheckpoint()
    count = current.count()
    drops["duplicate"] = rows_in - malformed - count
    rounds, converged = 0, True
    if params.min_user_interactions > 1 or params.min_item_interactions > 1:
        converged = False
        while rounds < params.max_rounds and not converged:
            rounds += 1
            after_users = _at_least(current, "user_id", params.min_user_interactions)
            n_users = after_users.count()
            after_items = _at_least(after_users, "item_id", params.min_item_interactions)
            n_items = after_items.count()
            drops["user_min_count"] += count - n_users
            drops["item_min_count"] += n_users - n_items
            converged = n_items == count or not params.fixed_point
            current, count = after_items, n_items
    _check_rows_left(rows_in, drops, count)
    info = {"rows_in": rows_in, "rows_out": count, "drops": drops, "rounds": rounds}
    info["converged"] = converged
    return {"interactions": current}, info


def _check_rows_left(rows_in: int, drops: Mapping[str, int], count: int) -> None:
    if count == 0:
        nonzero = ", ".join(f"{k}={v}" for k, v in drops.items() if v)
        raise DataError(f"clean dropped all {rows_in} rows ({nonzero}); nothing left to train on")


def _drop_reason(params: CleanParams) -> Column:
    rating = sf.col("rating")
    out_of_range = rating < sf.lit(params.rating_min)
    if params.rating_max is not None:
        out_of_range = out_of_range | (rating > sf.lit(params.rating_max))
    return (
        sf.when(sf.col("user_id").isNull() | (sf.trim("user_id") == ""), "null_user_id")
        .when(sf.col("item_id").isNull() | (sf.trim("item_id") == ""), "null_item_id")
        .when(rating.isNull() | sf.isnan(rating), "bad_rating")
        .when(out_of_range, "rating_out_of_range")
        .when(sf.col("timestamp").isNull() | (sf.col("timestamp") < 0), "bad_timestamp")
    )


def _at_least(frame: DataFrame, key: str, minimum: int) -> DataFrame:
    if minimum <= 1:
        return frame
    keep = frame.groupBy(key).count().filter(sf.col("count") >= minimum).select(key)
    # Checkpointed so that each round's plan does not grow with all the rounds before it.
    return frame.join(keep, key, "left_semi").localCheckpoint()
