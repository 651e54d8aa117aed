"""The canonical interactions frame that every loader returns and every tier consumes.

One pandas DataFrame, one row per event, with these columns (extra columns may follow):

=============  ==========  ==============================================================
column         dtype       meaning
=============  ==========  ==============================================================
``user_id``    ``str``     external user id; ids stay strings at every boundary
``item_id``    ``str``     external item id; tiers map ids to dense ints internally
``rating``     float32     explicit rating, or an event weight (1.0 for implicit data)
``timestamp``  int64       seconds since the Unix epoch (UTC), never negative
=============  ==========  ==============================================================

``str`` means pandas' string dtype (``str`` in pandas 3) or an object column holding only
``str``. Ids are strings so that "007" and "7" stay distinct and so that no tier silently
depends on another tier's integer mapping. No column may hold a missing value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.errors import DataError

INTERACTION_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "rating", "timestamp")
ID_COLUMNS: tuple[str, ...] = ("user_id", "item_id")


def interactions_frame(
    user_ids: Iterable[object] | pd.Series,
    item_ids: Iterable[object] | pd.Series,
    ratings: npt.ArrayLike | pd.Series,
    timestamps: npt.ArrayLike | pd.Series,
) -> pd.DataFrame:
    """Build a canonical frame from four columns, casting ids to ``str`` and numbers down."""
    return pd.DataFrame(
        {
            "user_id": pd.Series(user_ids).astype(str).reset_index(drop=True),
            "item_id": pd.Series(item_ids).astype(str).reset_index(drop=True),
            "rating": pd.Series(np.asarray(ratings, dtype=np.float32)),
            "timestamp": pd.Series(np.asarray(timestamps, dtype=np.int64)),
        }
    )


def validate_interactions(
    df: pd.DataFrame, source: str, *, first_line: int | None = None
) -> pd.DataFrame:
    """Check ``df`` against the convention above and return it unchanged.

    ``source`` names where the frame came from (a file path, a generator). When the rows
    map one-to-one onto lines of a text file, pass the line number of row 0 as
    ``first_line`` so that errors say ``line N``; otherwise they say ``row N`` (1-based).
    Raises DataError naming the source, the line or row, and the reason.
    """
    missing = [c for c in INTERACTION_COLUMNS if c not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns)) or "(none)"
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; it has {have}")

    def where(position: int) -> str:
        if first_line is None:
            return f"row {position + 1}"
        return f"line {first_line + position}"

    for column in INTERACTION_COLUMNS:
        nulls = df[column].isna().to_numpy()
        if nulls.any():
            raise DataError(f"{source}: {where(_first(nulls))}: {column} is missing")
    for column in ID_COLUMNS:
        _check_ids(df[column], column, source, where)
    _check_dtype(df, "rating", np.dtype(np.float32), source)
    _check_dtype(df, "timestamp", np.dtype(np.int64), source)
    finite = np.isfinite(df["rating"].to_numpy())
    if not finite.all():
        raise DataError(f"{source}: {where(_first(~finite))}: rating is not a finite number")
    negative = df["timestamp"].to_numpy() < 0
    if negative.any():
        raise DataError(f"{source}: {where(_first(negative))}: timestamp is negative")
    return df


def _first(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_dtype(df: pd.DataFrame, column: str, expected: np.dtype[Any], source: str) -> None:
    if df[column].dtype != expected:
        raise DataError(
            f"{source}: column {column} has dtype {df[column].dtype}, expected {expected}"
        )


def _check_ids(series: pd.Series, column: str, source: str, where: Callable[[int], str]) -> None:
    if not pd.api.types.is_string_dtype(series.dtype):
        raise DataError(
            f"{source}: column {column} has dtype {series.dtype}, expected str "
            "(ids are strings at every boundary)"
        )
    # An object column can mix str with ints; only scan element-wise when it does.
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=False) != "string":
        not_str = ~series.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        raise DataError(f"{source}: {where(_first(not_str))}: {column} is not a string")
    empty = (series == "").to_numpy(dtype=bool)
    if empty.any():
        raise DataError(f"{source}: {where(_first(empty))}: {column} is empty")
