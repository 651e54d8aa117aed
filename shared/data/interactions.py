"""Load interactions from any CSV or Parquet file into the canonical frame.

The file's columns are named through a mapping from canonical names to file columns::

    {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}

(on the command line: ``user=userId,item=movieId,rating=rating,timestamp=timestamp``).
Without a mapping, common spellings are tried (``user_id``, ``userId``, ``movieId``, ...).

* ``user`` and ``item`` are required; ids become strings whatever their type in the file.
* ``rating`` is optional: without it every row weighs 1.0 (implicit feedback).
* ``timestamp`` is optional: without it rows get their position (0, 1, 2, ...) so that
  "most recent" and time-based splits still follow file order. Accepted values: integer
  or fractional seconds, milliseconds, microseconds or nanoseconds since the epoch (told
  apart by the size of the largest value, see :func:`to_epoch_seconds`), ISO 8601 strings
  (naive ones are read as UTC) and Parquet timestamp columns.

CSV files need a header line; the delimiter is given or guessed from it. Line numbers in
errors assume one record per line (no quoted newlines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.data.frame import interactions_frame, validate_interactions
from shared.errors import DataError

CANONICAL_KEYS: tuple[str, ...] = ("user", "item", "rating", "timestamp")
_REQUIRED_KEYS = ("user", "item")
_ALIASES: Mapping[str, tuple[str, ...]] = {
    "user": ("user_id", "userId", "user", "userid", "UserID", "visitorid"),
    "item": ("item_id", "itemId", "movieId", "movie_id", "item", "itemid", "ItemID"),
    "rating": ("rating", "weight", "score"),
    "timestamp": ("timestamp", "ts", "time", "event_time", "datetime"),
}
_DELIMITERS = (",", "\t", ";", "|")
_PARQUET_SUFFIXES = (".parquet", ".pq")
# Epoch values above these magnitudes cannot be seconds (1e11 s is the year 5138), so
# they are read as milli-, micro- or nanoseconds.
_UNIT_LIMITS: tuple[tuple[float, int], ...] = ((1e11, 1), (1e14, 1_000), (1e17, 1_000_000))

Where = Callable[[int], str]


def parse_column_mapping(text: str) -> dict[str, str]:
    """Parse ``user=userId,item=movieId[,rating=r][,timestamp=t]`` into a mapping."""
    mapping: dict[str, str] = {}
    for part in text.split(","):
        key, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not key or not column:
            raise DataError(f"column mapping {text!r}: expected key=column, found {part!r}")
        if key not in CANONICAL_KEYS:
            raise DataError(
                f"column mapping {text!r}: unknown key {key!r}; use {', '.join(CANONICAL_KEYS)}"
            )
        if key in mapping:
            raise DataError(f"column mapping {text!r}: {key!r} is given twice")
        mapping[key] = column
    missing = [k for k in _REQUIRED_KEYS if k not in mapping]
    if missing:
        raise DataError(f"column mapping {text!r}: {' and '.join(missing)} must be given")
    return mapping


def load_interactions(
    path: Path | str,
    columns: Mapping[str, str] | None = None,
    *,
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a CSV file, a Parquet file or a folder of Parquet files as canonical interactions."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    source = str(path)
    is_parquet = path.is_dir() or path.suffix.lower() in _PARQUET_SUFFIXES
    if is_parquet:
        available = _parquet_columns(path)
        where: Where = _row
    else:
        delimiter = delimiter or _guess_delimiter(path, encoding)
        available = _csv_columns(path, delimiter, encoding)
        where = _line_after_header
    mapping = resolve_columns(columns, available, source)
    if is_parquet:
        raw = pd.read_parquet(path, columns=list(dict.fromkeys(mapping.values())))
    else:
        raw = _read_csv(path, delimiter or ",", mapping, encoding)
    n = len(raw)
    user = _ids(raw[mapping["user"]], mapping["user"], source, where)
    item = _ids(raw[mapping["item"]], mapping["item"], source, where)
    rating: npt.ArrayLike = np.ones(n, dtype=np.float32)
    if "rating" in mapping:
        rating = _ratings(raw[mapping["rating"]], mapping["rating"], source, where)
    timestamp: npt.ArrayLike = np.arange(n, dtype=np.int64)
    if "timestamp" in mapping:
        timestamp = to_epoch_seconds(raw[mapping["timestamp"]], mapping["timestamp"], source, where)
    frame = interactions_frame(user, item, rating, timestamp)
    return validate_interactions(frame, source, first_line=None if is_parquet else 2)


def resolve_columns(
    columns: Mapping[str, str] | None, available: list[str], source: str
) -> dict[str, str]:
    """Return canonical key -> file column, checking every named column exists."""
    have = ", ".join(available) or "(none)"
    if columns is None:
        resolved = {}
        for key, aliases in _ALIASES.items():
            found = next((a for a in aliases if a in available), None)
            if found is not None:
                resolved[key] = found
        for key in _REQUIRED_KEYS:
            if key not in resolved:
                raise DataError(
                    f"{source}: no {key} column (tried {', '.join(_ALIASES[key])}); "
                    f"the file has columns: {have}; pass a mapping such as user=...,item=..."
                )
        return resolved
    unknown = [k for k in columns if k not in CANONICAL_KEYS]
    if unknown:
        raise DataError(f"{source}: unknown mapping key(s) {', '.join(unknown)}")
    for key in _REQUIRED_KEYS:
        if key not in columns:
            raise DataError(f"{source}: the column mapping must name the {key} column")
    for key, column in columns.items():
        if column not in available:
            raise DataError(
                f"{source}: column {column!r} (for {key}) not found; the file has columns: {have}"
            )
    return dict(columns)


def to_epoch_seconds(values: pd.Series, column: str, source: str, where: Where) -> np.ndarray:
    """Convert a timestamp column to int64 seconds since the epoch (see module docstring)."""
    nulls = values.isna().to_numpy()
    if nulls.any():
        raise DataError(f"{source}: {where(_first(nulls))}: {column} is missing")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = pd.to_datetime(values, utc=True)
        return _seconds_from_datetimes(stamps)
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataError(f"{source}: column {column} holds booleans, not timestamps")
    numbers = pd.to_numeric(values, errors="coerce")
    if not numbers.isna().any():
        return _seconds_from_numbers(numbers.to_numpy(dtype=np.float64), values.to_numpy())
    stamps = pd.to_datetime(values.astype(str), utc=True, format="ISO8601", errors="coerce")
    bad = stamps.isna().to_numpy()
    if bad.any():
        i = _first(bad)
        raise DataError(
            f"{source}: {where(i)}: {column} {values.iloc[i]!r} is neither a number "
            "nor an ISO 8601 date"
        )
    return _seconds_from_datetimes(stamps)


def _seconds_from_numbers(as_float: npt.NDArray[np.float64], raw: np.ndarray) -> np.ndarray:
    peak = float(np.abs(as_float).max()) if len(as_float) else 0.0
    divisor = next((d for limit, d in _UNIT_LIMITS if peak < limit), 1_000_000_000)
    if np.issubdtype(raw.dtype, np.integer):
        # Stay in integers: float64 would round nanosecond values.
        return raw.astype(np.int64) // divisor
    return np.floor(as_float / divisor).astype(np.int64)


def _seconds_from_datetimes(stamps: pd.Series) -> np.ndarray:
    epoch = pd.Timestamp(0, tz="UTC")
    return ((stamps - epoch) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def _ids(values: pd.Series, column: str, source: str, where: Where) -> pd.Series:
    nulls = values.isna().to_numpy()
    if nulls.any():
        raise DataError(f"{source}: {where(_first(nulls))}: {column} is missing")
    if pd.api.types.is_float_dtype(values.dtype):
        # Parquet writers turn int columns with gaps into floats; 7.0 must become "7".
        whole = (values % 1 == 0).to_numpy()
        if not whole.all():
            i = _first(~whole)
            raise DataError(f"{source}: {where(i)}: {column} {values.iloc[i]!r} is not an id")
        values = values.astype(np.int64)
    return values.astype(str)


def _ratings(values: pd.Series, column: str, source: str, where: Where) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = (numbers.isna() & values.notna()).to_numpy()
    if bad.any():
        i = _first(bad)
        raise DataError(f"{source}: {where(i)}: {column} {values.iloc[i]!r} is not a number")
    return numbers.to_numpy(dtype=np.float32, na_value=np.nan)


def _guess_delimiter(path: Path, encoding: str) -> str:
    """Pick the candidate delimiter that occurs most often in the header line."""
    with path.open(encoding=encoding, errors="replace") as handle:
        header = handle.readline()
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_columns(path: Path, delimiter: str, encoding: str) -> list[str]:
    try:
        header = pd.read_csv(path, sep=delimiter, nrows=0, encoding=encoding)
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read a header line: {exc}") from exc
    return [str(c) for c in header.columns]


def _read_csv(
    path: Path, delimiter: str, mapping: Mapping[str, str], encoding: str
) -> pd.DataFrame:
    id_columns = {mapping["user"]: str, mapping["item"]: str}
    try:
        return pd.read_csv(
            path,
            sep=delimiter,
            usecols=list(dict.fromkeys(mapping.values())),
            dtype=id_columns,  # keep "007" as written
            encoding=encoding,
            keep_default_na=False,  # an id spelled "NA" is still an id; only empty is missing
            na_values=[""],
            skip_blank_lines=False,  # keeps row i on line i + 2 for error messages
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise DataError(f"{path}: {reason}") from exc


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.dataset as ds

    if path.is_dir() and not any(path.rglob("*.parquet")):
        raise DataError(f"{path}: folder holds no .parquet files")
    try:
        return list(ds.dataset(path, format="parquet").schema.names)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise DataError(f"{path}: not readable as Parquet: {exc}") from exc


def _first(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


def _row(position: int) -> str:
    return f"row {position + 1}"


def _line_after_header(position: int) -> str:
    return f"line {position + 2}"
