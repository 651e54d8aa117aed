"""The ``ingest`` step: a dataset, an event-lake folder or a pandas frame -> canonical Parquet.

Output table ``interactions``: user_id string, item_id string, rating float, timestamp
long, source_row long. ``source_row`` is the row's position in the source (monotonic, not
necessarily dense for the lake): Spark keeps no row order through a shuffle, and the
benchmark split draws its random numbers in source order, while dedupe keeps the first.

Rows are not judged here: malformed rows pass through to ``clean``, which counts them.
One kind of lake row is left out instead, as it is no interaction at all: an impression
(``type == "impression"``) says what the user was shown, not what they did, and counted as
implicit feedback (rating 1.0, as a row without a value is) it would train every model to
recommend what was already recommended. The manifest's ``left_out`` counts those rows by
type. A lake without a ``type`` column (canonical columns only) keeps every row, as does a
row whose type is null: only a row that says it is an impression is left out.

Source fingerprints (what decides whether a source changed):
* a file up to ``_HASH_LIMIT`` bytes is hashed by content (MovieLens 100K's ``u.data`` is
  2 MB; hashing takes milliseconds), so a copy or a ``touch`` is still a cache hit;
* a bigger file is fingerprinted by path, size and mtime (nanoseconds), as make and rsync
  do: reading gigabytes on every run to learn that nothing changed is too slow, and the
  error it allows (an edit keeping size and mtime) needs deliberate effort;
* a folder is the list of its files' fingerprints (relative names, sorted);
* a pandas frame is hashed by content (``hash_pandas_object``) with its column names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf

from offline.pipeline.dag import Step, StepContext
from shared.data.catalog import DatasetPaths, load_dataset
from shared.data.frame import INTERACTION_COLUMNS
from shared.data.sources import MOVIELENS_100K, SYNTHETIC
from shared.errors import DataError
from shared.events import EventType

CODE_VERSION = "ingest/2"  # 2: lake impressions left out
SCHEMA = "user_id string, item_id string, rating float, timestamp long, source_row long"
# Fields of shared.events.Event that may sit beside the canonical columns in the lake.
EVENT_COLUMNS = frozenset({"event_id", "type", "value", "context", "schema_version"})
# Lake event types that are no interaction: exposure, not feedback (see the docstring).
LEFT_OUT_TYPES = (EventType.IMPRESSION.value,)
_HASH_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class EventLake:
    """A folder of Parquet event files (canonical columns and/or ``Event`` fields)."""

    path: Path


@dataclass(frozen=True, eq=False)
class FrameSource:
    """An in-memory frame with the canonical columns, values not yet checked."""

    frame: pd.DataFrame
    name: str = "frame"


Source = str | Path | EventLake | FrameSource


def ingest_step(source: Source, paths: DatasetPaths) -> Step:
    """The ingest step for ``source``; its fingerprint is the step's only parameter."""

    def body(ctx: StepContext) -> tuple[dict[str, DataFrame], dict[str, Any]]:
        frame, label, left_out = _read(ctx.spark, source, paths)
        # isEmpty stops at the first row; a count() here was a full pass over the source
        # before the write made another one (the runner counts the written rows).
        if frame.isEmpty():
            if any(left_out.values()):
                kinds = ", ".join(f"{n:,} {kind}" for kind, n in left_out.items() if n)
                raise DataError(f"{label}: no interactions (only rows left out: {kinds})")
            raise DataError(f"{label}: no interactions (the input is empty)")
        info: dict[str, Any] = {"source": label}
        if left_out:
            info["left_out"] = left_out
        return {"interactions": frame}, info

    return Step("ingest", body, CODE_VERSION, params={"source": fingerprint(source, paths)})


def fingerprint(source: Source, paths: DatasetPaths) -> dict[str, Any]:
    """What identifies the source's content (see the module docstring for the choices)."""
    if isinstance(source, FrameSource):
        frame = source.frame
        digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
        if len(frame):
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return {"kind": "frame", "name": source.name, "sha256": digest.hexdigest()}
    if isinstance(source, EventLake):
        return {"kind": "lake", "files": _path_fingerprint(Path(source.path))}
    return {"kind": "dataset", "files": _path_fingerprint(_dataset_path(str(source), paths))}


def _dataset_path(spec: str, paths: DatasetPaths) -> Path:
    if spec == MOVIELENS_100K:
        return paths.movielens_dir / "u.data"
    path = paths.synthetic_dir if spec == SYNTHETIC else Path(spec)
    if not path.exists():
        raise DataError(f"{spec}: no such file, folder or dataset name")
    return path


def _path_fingerprint(path: Path) -> list[list[Any]]:
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    out: list[list[Any]] = []
    for file in files:
        stat = file.stat()
        name = file.name if file == path else file.relative_to(path).as_posix()
        if stat.st_size <= _HASH_LIMIT:
            out.append([name, "sha256", hashlib.sha256(file.read_bytes()).hexdigest()])
        else:
            out.append([str(file.resolve()), "stat", stat.st_size, stat.st_mtime_ns])
    return out


def _read(
    spark: SparkSession, source: Source, paths: DatasetPaths
) -> tuple[DataFrame, str, dict[str, int]]:
    """The interactions, the source's label and the rows left out by type (lake only)."""
    if isinstance(source, FrameSource):
        return _from_pandas(spark, _coerce(source.frame, source.name)), source.name, {}
    if isinstance(source, EventLake):
        lake, left_out = _from_lake(spark, Path(source.path))
        return lake, str(source.path), left_out
    frame, label = load_dataset(str(source), paths)  # validated: no bad rows from here
    return _from_pandas(spark, _coerce(frame[list(INTERACTION_COLUMNS)], label)), label, {}


def _coerce(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Canonical columns with missing values kept (as None/NaN) for ``clean`` to count."""
    _check_columns(list(map(str, frame.columns)), set(INTERACTION_COLUMNS), label)
    if len(frame) == 0:
        raise DataError(f"{label}: no interactions (the input is empty)")
    timestamps = np.floor(pd.to_numeric(frame["timestamp"], errors="coerce"))
    return pd.DataFrame(
        {
            "user_id": _ids(frame["user_id"]),
            "item_id": _ids(frame["item_id"]),
            # Unparseable ratings become NaN, which clean counts as bad_rating.
            "rating": pd.to_numeric(frame["rating"], errors="coerce").astype(np.float32),
            "timestamp": pd.array(timestamps, dtype="Int64"),
            "source_row": np.arange(len(frame), dtype=np.int64),
        }
    )


def _ids(values: pd.Series) -> pd.Series:
    # astype(str) would turn a missing id into the string "nan"; keep it missing instead.
    return pd.Series(
        [None if pd.isna(v) else str(v) for v in values.to_numpy(dtype=object)], dtype=object
    )


def _from_pandas(spark: SparkSession, frame: pd.DataFrame) -> DataFrame:
    return spark.createDataFrame(frame, schema=SCHEMA)


def _from_lake(spark: SparkSession, path: Path) -> tuple[DataFrame, dict[str, int]]:
    """The lake's interactions, and how many rows of each left-out type it held (none
    counted, and nothing left out, for a lake without a ``type`` column)."""
    try:
        raw = spark.read.parquet(str(path))
    except AnalysisException as err:  # an empty folder has no schema to infer
        raise DataError(f"{path}: no readable Parquet event files ({err.getCondition()})") from err
    columns = raw.columns
    _check_columns(columns, set(INTERACTION_COLUMNS) | EVENT_COLUMNS, str(path))
    needed = [c for c in ("user_id", "item_id", "timestamp") if c not in columns]
    if needed or not {"rating", "value"} & set(columns):
        missing = [*needed, *([] if {"rating", "value"} & set(columns) else ["rating or value"])]
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    # An event without a value is implicit feedback, weight 1.0 (the canonical frame's rule).
    rating = sf.col("rating") if "rating" in columns else sf.coalesce(sf.col("value"), sf.lit(1.0))
    left_out: dict[str, int] = {}
    if "type" in columns:
        kind = sf.col("type").cast("string")
        # ``isin`` is null for a null type, and a filter drops null as it drops false:
        # coalesced, such a row stays rather than vanishing uncounted.
        left = sf.coalesce(kind.isin(*LEFT_OUT_TYPES), sf.lit(False))
        # One small job that reads only the type column (dictionary-encoded, few values).
        counts = raw.filter(left).groupBy(kind.alias("type")).count().collect()
        left_out = dict.fromkeys(LEFT_OUT_TYPES, 0) | {r["type"]: int(r["count"]) for r in counts}
        raw = raw.filter(~left)
    frame = raw.select(
        sf.col("user_id").cast("string").alias("user_id"),
        sf.col("item_id").cast("string").alias("item_id"),
        rating.cast("float").alias("rating"),
        sf.floor(sf.col("timestamp").cast("double")).cast("long").alias("timestamp"),
        sf.monotonically_increasing_id().alias("source_row"),
    )
    return frame, left_out


def _check_columns(columns: list[str], allowed: set[str], label: str) -> None:
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        raise DataError(
            f"{label}: unknown column(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}"
        )
    missing = [c for c in INTERACTION_COLUMNS if c not in columns]
    if missing and allowed == set(INTERACTION_COLUMNS):
        raise DataError(f"{label}: missing column(s) {', '.join(missing)}")
