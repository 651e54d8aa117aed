"""Load MovieLens 100K (GroupLens' ``ml-100k``) into canonical frames.

``load_ratings`` returns the interactions frame described in :mod:`shared.data.frame`;
``load_items`` and ``load_users`` return the item and user metadata. Files are parsed
whole by pandas; only when something is wrong is the file walked line by line to name
the first bad line (see :mod:`shared.data.textfile`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.data.frame import interactions_frame, validate_interactions
from shared.data.sources import DOWNLOAD_HINT
from shared.data.textfile import (
    FieldCheck,
    any_field,
    integer_field,
    one_of,
    raise_first_bad_line,
)
from shared.errors import DataError

# The 19 genre flags of u.item in column order; used when u.genre is absent.
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_RATING_CHECKS: tuple[FieldCheck, ...] = (
    integer_field("user id"),
    integer_field("item id"),
    integer_field("rating", 1, 5),
    integer_field("timestamp"),
)
_ITEM_BASE_COLUMNS = ("item_id", "title", "release_date", "video_release_date", "imdb_url")
_USER_COLUMNS = ("user_id", "age", "gender", "occupation", "zip_code")
_USER_CHECKS: tuple[FieldCheck, ...] = (
    integer_field("user id"),
    integer_field("age", 0, 150),
    any_field,
    any_field,
    any_field,
)
_RELEASE_FORMAT = "%d-%b-%Y"  # e.g. 01-Jan-1995
_YEAR_IN_TITLE = r"\((\d{4})\)\s*$"


def load_ratings(directory: Path | str) -> pd.DataFrame:
    """Read ``u.data`` (user, item, rating 1..5, unix seconds; tab-separated)."""
    path = _require(Path(directory), "u.data")
    names = ["user", "item", "rating", "timestamp"]
    try:
        raw = _read(path, sep="\t", names=names, dtype=np.dtype(np.int64))
    except (ValueError, pd.errors.ParserError) as exc:  # non-integers, wrong field counts
        raise_first_bad_line(path, sep="\t", checks=_RATING_CHECKS, cause=exc)
    ids_ok = (raw[["user", "item", "timestamp"]] >= 0).all(axis=None)
    if not (ids_ok and raw["rating"].between(1, 5).all()):
        raise_first_bad_line(path, sep="\t", checks=_RATING_CHECKS)
    frame = interactions_frame(raw["user"], raw["item"], raw["rating"], raw["timestamp"])
    return validate_interactions(frame, str(path), first_line=1)


def load_items(directory: Path | str) -> pd.DataFrame:
    """Read ``u.item``: item_id, title, year (Int64, nullable), release_date, genres, imdb_url.

    ``year`` comes from the "(1995)" at the end of the title, else from the release date;
    ``genres`` lists the names (from ``u.genre``) of the flags set on each item.
    """
    directory = Path(directory)
    path = _require(directory, "u.item")
    genres = _genre_names(directory)
    names = [*_ITEM_BASE_COLUMNS, *genres]
    checks = _item_checks(genres)
    try:
        raw = _read(path, sep="|", names=names, dtype=str)
    except (ValueError, pd.errors.ParserError) as exc:
        raise_first_bad_line(path, sep="|", checks=checks, cause=exc)
    release = pd.to_datetime(raw["release_date"], format=_RELEASE_FORMAT, errors="coerce")
    flags = raw[list(genres)]
    ok = (
        not raw.isna().any(axis=None)
        and raw["item_id"].str.fullmatch(r"\d+").all()
        and flags.isin(["0", "1"]).all(axis=None)
        and not (release.isna() & (raw["release_date"] != "")).any()
    )
    if not ok:
        raise_first_bad_line(path, sep="|", checks=checks)
    year = pd.to_numeric(raw["title"].str.extract(_YEAR_IN_TITLE, expand=False))
    year = year.fillna(release.dt.year).astype("Int64")
    names_array = np.array(genres, dtype=object)
    flag_matrix = flags.to_numpy() == "1"
    return pd.DataFrame(
        {
            "item_id": raw["item_id"].astype(str),
            "title": raw["title"].str.strip(),
            "year": year,
            "release_date": release,
            "genres": [list(names_array[row]) for row in flag_matrix],
            "imdb_url": raw["imdb_url"],
        }
    )


def load_users(directory: Path | str) -> pd.DataFrame:
    """Read ``u.user``: user_id, age, gender, occupation, zip_code (ids and zips as str)."""
    path = _require(Path(directory), "u.user")
    try:
        raw = _read(path, sep="|", names=list(_USER_COLUMNS), dtype=str)
    except (ValueError, pd.errors.ParserError) as exc:
        raise_first_bad_line(path, sep="|", checks=_USER_CHECKS, cause=exc)
    age = pd.to_numeric(raw["age"], errors="coerce")
    ok = (
        not raw.isna().any(axis=None)
        and raw["user_id"].str.fullmatch(r"\d+").all()
        and age.between(0, 150).all()
    )
    if not ok:
        raise_first_bad_line(path, sep="|", checks=_USER_CHECKS)
    users = raw.astype(str)
    users["age"] = age.astype(np.int64)
    return users


def _require(directory: Path, name: str) -> Path:
    if not directory.is_dir():
        raise DataError(f"{directory}: MovieLens 100K folder not found; {DOWNLOAD_HINT}")
    path = directory / name
    if not path.is_file():
        raise DataError(f"{path}: file not found; {DOWNLOAD_HINT}")
    return path


def _read(
    path: Path, *, sep: str, names: list[str], dtype: np.dtype[Any] | type[str]
) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=None,
            names=names,
            index_col=False,
            dtype=dtype,
            encoding="latin-1",  # titles hold Latin-1 bytes; every byte decodes
            quoting=3,  # csv.QUOTE_NONE: quotes in titles are text
            keep_default_na=False,
            engine="c",
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: file is empty") from exc
    if frame.empty:  # with names given, pandas returns no rows instead of raising
        raise DataError(f"{path}: file is empty")
    return frame


def _genre_names(directory: Path) -> tuple[str, ...]:
    path = directory / "u.genre"
    if not path.is_file():
        return GENRES
    names: dict[int, str] = {}
    text = path.read_text(encoding="latin-1")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, _, index = line.rpartition("|")
        if not name or not index.isdigit():
            raise DataError(f"{path}: line {number}: expected 'name|index', found {line!r}")
        names[int(index)] = name
    if sorted(names) != list(range(len(GENRES))):
        raise DataError(f"{path}: expected genre indices 0..{len(GENRES) - 1}")
    return tuple(names[i] for i in range(len(GENRES)))


def _item_checks(genres: tuple[str, ...]) -> tuple[FieldCheck, ...]:
    def release(value: str) -> str | None:
        if not value:
            return None
        try:
            datetime.strptime(value, _RELEASE_FORMAT)
        except ValueError:
            return f"release date {value!r} is not like 01-Jan-1995"
        return None

    flags = [one_of(f"genre flag {name!r}", ("0", "1")) for name in genres]
    return (integer_field("item id"), any_field, release, any_field, any_field, *flags)
