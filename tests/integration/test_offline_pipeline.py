"""The offline pipeline on Spark: caching, drop counts, failures, no training/serving skew."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf

from nearline.lake import SCHEMA as LAKE_SCHEMA
from nearline.lake import LakeWriter
from offline.pipeline import (
    CleanParams,
    EventLake,
    FrameSource,
    SplitParams,
    Step,
    StepContext,
    run_pipeline,
    run_step,
)
from offline.pipeline.dag import MANIFEST
from offline.pipeline.ingest import _from_lake
from offline.spark import spark_session
from offline.split import benchmark_split, temporal_split
from shared.data.movielens import load_items, load_ratings
from shared.errors import DataError
from shared.events import Event, EventType, Shown
from shared.features import item_stats, user_features
from shared.settings import Settings

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session(Settings(spark_master="local[2]"), "recsys-tests", shuffle_partitions=4)
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, spark_master="local[2]")


def _frame(n_users: int = 6, n_items: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pairs = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.8]
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u, _ in pairs],
            "item_id": [f"i{i}" for _, i in pairs],
            "rating": rng.integers(1, 6, len(pairs)).astype(np.float32),
            "timestamp": rng.integers(1_000, 9_000, len(pairs)).astype(np.int64),
        }
    )


def _planted() -> pd.DataFrame:
    """A clean frame plus bad rows of every kind, in known numbers."""
    good = _frame()
    first = good.iloc[0]
    bad = pd.DataFrame(
        {
            "user_id": [None, "x1", "x2", "x3", "x4", "x5", first["user_id"], first["user_id"]],
            "item_id": ["i0", None, "i0", "i0", "i0", "i0", first["item_id"], first["item_id"]],
            "rating": [3.0, 3.0, np.nan, -1.0, 9.0, 3.0, 1.0, 2.0],
            "timestamp": [10, 10, 10, 10, 10, -5, first["timestamp"], first["timestamp"]],
        }
    )
    return pd.concat([good, bad], ignore_index=True)


def _pandas(path: Path, spark: SparkSession) -> pd.DataFrame:
    return spark.read.parquet(str(path)).toPandas()


def test_rerun_is_cached_and_a_parameter_change_makes_a_new_output(
    spark: SparkSession, settings: Settings
) -> None:
    source = FrameSource(_frame(), "small")
    first = run_pipeline(settings, source, spark=spark)
    assert not any(first.cached.values())
    again = run_pipeline(settings, source, spark=spark)
    assert all(again.cached.values())
    assert again.rows == first.rows
    assert {k: v.path for k, v in again.steps.items()} == {
        k: v.path for k, v in first.steps.items()
    }
    changed = run_pipeline(settings, source, split=SplitParams(ratio=0.5), spark=spark)
    assert changed.cached == {"ingest": True, "clean": True, "split": False, "features": False}
    assert changed.path("split", "train") != first.path("split", "train")
    assert (first.steps["split"].path / MANIFEST).is_file()  # the old output stays


def test_drop_counts_name_each_planted_bad_row(spark: SparkSession, settings: Settings) -> None:
    result = run_pipeline(
        settings,
        FrameSource(_planted(), "planted"),
        clean=CleanParams(rating_min=1.0, rating_max=5.0),
        split=SplitParams(kind="none"),
        spark=spark,
    )
    drops = result.drops
    assert drops["null_user_id"] == 1
    assert drops["null_item_id"] == 1
    assert drops["bad_rating"] == 1
    assert drops["rating_out_of_range"] == 2
    assert drops["bad_timestamp"] == 1
    assert drops["duplicate"] == 2
    assert result.rows["clean"]["interactions"] == len(_frame())
    # The first of the duplicated rows (in source order) is the one kept.
    kept = _pandas(result.path("clean", "interactions"), spark)
    assert (kept["source_row"] == 0).any()


def test_min_counts_reach_a_fixed_point(spark: SparkSession, settings: Settings) -> None:
    # u9 has 2 events on i8/i9 which nobody else has: dropping u9's items drops u9 too.
    extra = pd.DataFrame(
        {"user_id": ["u9", "u9"], "item_id": ["i8", "i9"], "rating": [3.0, 3.0]}
    ).assign(timestamp=[5, 6])
    frame = pd.concat([_frame(), extra], ignore_index=True)
    result = run_pipeline(
        settings,
        FrameSource(frame, "fixed-point"),
        clean=CleanParams(min_user_interactions=2, min_item_interactions=2),
        split=SplitParams(kind="none"),
        spark=spark,
    )
    kept = _pandas(result.path("clean", "interactions"), spark)
    assert "u9" not in set(kept["user_id"])
    assert result.steps["clean"].info["converged"]
    assert kept.groupby("user_id").size().min() >= 2
    assert kept.groupby("item_id").size().min() >= 2
    assert result.drops["item_min_count"] == 2


def test_failed_step_leaves_no_manifest_and_no_temp_folder(
    spark: SparkSession, tmp_path: Path
) -> None:
    def explode(value: int) -> int:
        raise RuntimeError(f"boom at {value}")

    def body(ctx: StepContext) -> tuple[dict[str, DataFrame], dict[str, Any]]:
        failing = sf.udf(explode, "int")
        return {"t": ctx.spark.range(10).select(failing("id").alias("x"))}, {}

    with pytest.raises(Exception, match="boom"):
        run_step(spark, Step("broken", body, "broken/1"), tmp_path, {})
    assert not list((tmp_path / "broken").rglob(MANIFEST))
    assert not list((tmp_path / "broken").iterdir())


def test_bad_input_raises_data_error(spark: SparkSession, settings: Settings) -> None:
    with pytest.raises(DataError, match="empty"):
        run_pipeline(settings, FrameSource(_frame().iloc[:0], "nothing"), spark=spark)
    with pytest.raises(DataError, match=r"unknown column.*colour"):
        run_pipeline(settings, FrameSource(_frame().assign(colour="red"), "odd"), spark=spark)
    lake = settings.home / "lake"
    spark.createDataFrame(_frame().assign(shoe_size=42)).write.parquet(str(lake))
    with pytest.raises(DataError, match="shoe_size"):
        run_pipeline(settings, EventLake(lake), spark=spark)


def test_event_lake_events_without_value_count_as_implicit(
    spark: SparkSession, settings: Settings
) -> None:
    frame = _frame().drop(columns="rating").assign(value=None, type="click", event_id="e")
    frame["value"] = frame["value"].astype("float64")
    frame["timestamp"] = frame["timestamp"].astype("float64") + 0.25  # events carry ms
    lake = settings.home / "lake"
    spark.createDataFrame(frame).write.parquet(str(lake))
    result = run_pipeline(settings, EventLake(lake), split=SplitParams(kind="none"), spark=spark)
    kept = _pandas(result.path("clean", "interactions"), spark)
    assert (kept["rating"] == 1.0).all()
    assert set(kept["timestamp"]) <= set(_frame()["timestamp"])


def test_event_lake_impressions_are_left_out_and_counted(
    spark: SparkSession, settings: Settings
) -> None:
    # A lake as the nearline tier writes it: engagement events, one impression per answer
    # (its shown list in the context) and an old per-item impression; plus a file holding
    # a row without a type. Only the impressions' rows (each one row, whatever its list)
    # leave; the items they show (i7, i8, i9) are nowhere else, so they must be gone.
    def event(n: int, user: str, item: str, kind: EventType, **fields: Any) -> Event:
        return Event(
            event_id=f"e{n}", user_id=user, item_id=item, type=kind, timestamp=1_000.0 + n, **fields
        )

    shown = tuple(
        Shown(item_id=i, position=p, source="popular") for p, i in enumerate(["i7", "i8"])
    )
    lake = settings.home / "lake"
    writer = LakeWriter(lake, "events")
    written = [
        event(0, "u0", "i1", EventType.PLAY),
        event(1, "u0", "i2", EventType.RATE, value=4.0),
        event(2, "u0", "i7", EventType.IMPRESSION, shown=shown, context={"arm": "blend"}),
        event(3, "u1", "i1", EventType.CLICK),
        event(4, "u1", "i7", EventType.IMPRESSION, shown=shown),
        event(5, "u1", "i9", EventType.IMPRESSION, context={"position": 3, "source": "fresh"}),
    ]
    for offset, e in enumerate(written):
        writer.add(0, offset, e)
    writer.flush()
    untyped = {**{c: [None] for c in LAKE_SCHEMA.names}, "user_id": ["u2"], "item_id": ["i3"]}
    untyped["timestamp"] = [1_010.0]
    pq.write_table(pa.table(untyped, schema=LAKE_SCHEMA), lake / "untyped.parquet")

    result = run_pipeline(settings, EventLake(lake), split=SplitParams(kind="none"), spark=spark)
    assert result.steps["ingest"].info["left_out"] == {"impression": 3}
    assert result.rows["ingest"] == {"interactions": 4}
    kept = _pandas(result.path("clean", "interactions"), spark)
    assert sorted(zip(kept["user_id"], kept["item_id"], kept["rating"], strict=True)) == [
        ("u0", "i1", 1.0),
        ("u0", "i2", 4.0),
        ("u1", "i1", 1.0),
        ("u2", "i3", 1.0),
    ]

    # A lake of canonical columns only (no type: an older lake) keeps every row.
    plain = settings.home / "plain"
    spark.createDataFrame(_frame()).write.parquet(str(plain))
    frame, left_out = _from_lake(spark, plain)
    assert left_out == {} and frame.count() == len(_frame())
    # A lake of impressions only has nothing to train on, and says why.
    only = settings.home / "only"
    only_writer = LakeWriter(only, "events")
    only_writer.add(0, 0, written[2])
    only_writer.flush()
    with pytest.raises(DataError, match="only rows left out: 1 impression"):
        run_pipeline(settings, EventLake(only), spark=spark)


def test_movielens_benchmark_split_and_features_match_the_pure_functions(
    spark: SparkSession, settings: Settings, movielens_dir: Path
) -> None:
    settings = settings.model_copy(update={"movielens_dir": movielens_dir})
    items = load_items(movielens_dir)
    result = run_pipeline(settings, "movielens-100k", items=items, spark=spark)
    ratings = load_ratings(movielens_dir)
    train, test = benchmark_split(ratings)
    assert result.rows["split"] == {"train": len(train), "test": len(test)}
    key = ["user_id", "item_id", "timestamp"]

    def rows(frame: pd.DataFrame) -> set[tuple[Any, ...]]:
        return set(frame[key].astype(str).itertuples(index=False, name=None))

    got_train = _pandas(result.path("split", "train"), spark)
    assert rows(got_train) == rows(train)
    assert rows(_pandas(result.path("split", "test"), spark)) == rows(test)

    # No training/serving skew: the pipeline's features of a few users (computed in Spark
    # groups) equal shared.features.user_features called on that one user's rows alone.
    ref = int(result.steps["features"].info["reference_time"])
    assert ref == int(train["timestamp"].max())
    spark_users = _pandas(result.path("features", "users"), spark).set_index("user_id")
    for user in ["1", "42", "943"]:
        direct = user_features(train[train["user_id"] == user], reference_time=ref)
        pdt.assert_frame_equal(
            spark_users.loc[[user]].reset_index(), direct, check_dtype=False, check_exact=True
        )
    spark_items = _pandas(result.path("features", "items"), spark).set_index("item_id")
    some = ["1", "50", "1682"]
    direct_items = item_stats(train[train["item_id"].isin(some)], reference_time=ref)
    pdt.assert_frame_equal(
        spark_items.loc[
            list(direct_items["item_id"]), list(direct_items.columns[1:])
        ].reset_index(),
        direct_items,
        check_dtype=False,
        check_exact=True,
    )
    assert spark_items.loc["50", "popularity_rank"] == 1  # Star Wars, the most rated
    assert spark_items.loc["1", "genre_Comedy"] == 1  # Toy Story


def test_temporal_split_in_spark_matches_the_pure_function(
    spark: SparkSession, settings: Settings
) -> None:
    """The temporal split filters in Spark; its parts equal the pure version's, row for row."""
    frame = _frame(n_users=30, n_items=20, seed=4)
    result = run_pipeline(
        settings,
        FrameSource(frame, "temporal"),
        split=SplitParams(kind="temporal", test_fraction=0.3),
        spark=spark,
    )
    train, test = temporal_split(frame, test_fraction=0.3)
    key = ["user_id", "item_id", "timestamp"]

    def rows(part: pd.DataFrame) -> list[tuple[Any, ...]]:
        return sorted(part[key].astype(str).itertuples(index=False, name=None))

    assert len(train) and len(test)
    assert rows(_pandas(result.path("split", "train"), spark)) == rows(train)
    assert rows(_pandas(result.path("split", "test"), spark)) == rows(test)
    assert result.steps["split"].info["cut"] == int(test["timestamp"].min())
