"""MovieLens 100K loader: exact counts on the real files, exact lines on broken copies."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.data.frame import INTERACTION_COLUMNS
from shared.data.movielens import GENRES, load_items, load_ratings, load_users
from shared.errors import DataError


@pytest.fixture
def copy_dir(movielens_dir: Path, tmp_path: Path) -> Path:
    """A private, writable copy to break (never inside the repository)."""
    target = tmp_path / "ml-100k"
    shutil.copytree(movielens_dir, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = text.encode("latin-1")
    path.write_bytes(b"\n".join(lines))


def test_ratings_match_published_counts(movielens_dir: Path) -> None:
    ratings = load_ratings(movielens_dir)

    assert list(ratings.columns) == list(INTERACTION_COLUMNS)
    assert len(ratings) == 100_000
    assert ratings["user_id"].nunique() == 943
    assert ratings["item_id"].nunique() == 1682
    histogram = ratings["rating"].value_counts().sort_index()
    assert histogram.to_dict() == {1.0: 6110, 2.0: 11370, 3.0: 27145, 4.0: 34174, 5.0: 21201}
    assert ratings["rating"].dtype == np.float32
    assert ratings["timestamp"].dtype == np.int64
    assert pd.api.types.is_string_dtype(ratings["user_id"].dtype)
    assert ratings.iloc[0].tolist() == ["196", "242", 3.0, 881250949]
    assert (ratings["timestamp"].min(), ratings["timestamp"].max()) == (874724710, 893286638)


def test_ratings_load_well_under_a_second(movielens_dir: Path) -> None:
    load_ratings(movielens_dir)  # warm imports and caches
    started = time.perf_counter()
    load_ratings(movielens_dir)
    assert time.perf_counter() - started < 0.5


def test_items_have_year_genres_and_latin1_titles(movielens_dir: Path) -> None:
    items = load_items(movielens_dir).set_index("item_id")

    assert len(items) == 1682
    toy_story = items.loc["1"]
    assert toy_story["title"] == "Toy Story (1995)"
    assert toy_story["year"] == 1995
    assert toy_story["release_date"] == pd.Timestamp("1995-01-01")
    assert toy_story["genres"] == ["Animation", "Children's", "Comedy"]
    assert "Misérables, Les (1995)" in set(items["title"])
    assert items["year"].isna()["267"]  # the "unknown" item has no date at all
    assert items["year"].notna().sum() == 1681
    assert all(len(genres) >= 1 for genres in items["genres"])


def test_users_keep_zip_codes_as_text(movielens_dir: Path) -> None:
    users = load_users(movielens_dir).set_index("user_id")

    assert len(users) == 943
    assert list(users.loc["1"]) == [24, "M", "technician", "85711"]
    assert users["age"].dtype == np.int64
    assert not users["zip_code"].str.fullmatch(r"\d{5}").all()  # e.g. Canadian codes


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("196\t242\t3", "expected 4 fields separated by tabs, found 3"),
        ("196\t242\t3\t881250949\t1", "expected 4 fields separated by tabs, found 5"),
        ("abc\t242\t3\t881250949", "user id 'abc' is not an integer"),
        ("196\tx9\t3\t881250949", "item id 'x9' is not an integer"),
        ("196\t242\t7\t881250949", "rating 7 is out of range 1..5"),
        ("196\t242\t3.5\t881250949", "rating '3.5' is not an integer"),
        ("196\t242\t3\tyesterday", "timestamp 'yesterday' is not an integer"),
        ("196\t242\t3\t-5", "timestamp -5 is out of range"),
    ],
)
def test_bad_rating_line_is_reported_by_number(copy_dir: Path, line: str, reason: str) -> None:
    replace_line(copy_dir / "u.data", 37, line)

    with pytest.raises(DataError) as caught:
        load_ratings(copy_dir)

    assert str(caught.value).startswith(f"{copy_dir / 'u.data'}: line 37: ")
    assert reason in str(caught.value)


def test_blank_lines_are_skipped_but_counted(copy_dir: Path) -> None:
    path = copy_dir / "u.data"
    lines = path.read_bytes().split(b"\n")
    lines[10:10] = [b""]  # line 11 is now blank; old line 37 is line 38
    lines[37] = b"196\t242\t9\t881250949"
    path.write_bytes(b"\n".join(lines))

    with pytest.raises(DataError, match=r"line 38: rating 9 is out of range"):
        load_ratings(copy_dir)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        (8, "2", "genre flag 'Animation' '2' is not one of 0, 1"),  # 5 fields, then genres
        (2, "1995-01-01", "release date '1995-01-01' is not like 01-Jan-1995"),
        (0, "one", "item id 'one' is not an integer"),
    ],
)
def test_bad_item_line_is_reported_by_number(
    copy_dir: Path, field: int, value: str, reason: str
) -> None:
    path = copy_dir / "u.item"
    fields = path.read_bytes().split(b"\n")[36].decode("latin-1").split("|")
    fields[field] = value
    replace_line(path, 37, "|".join(fields))

    with pytest.raises(DataError) as caught:
        load_items(copy_dir)

    assert str(caught.value) == f"{path}: line 37: {reason}"


def test_item_line_with_missing_fields(copy_dir: Path) -> None:
    replace_line(copy_dir / "u.item", 37, "37|Nadja (1994)|01-Jan-1994")

    with pytest.raises(DataError, match=r"line 37: expected 24 fields separated by '\|', found 3"):
        load_items(copy_dir)


def test_bad_user_age(copy_dir: Path) -> None:
    replace_line(copy_dir / "u.user", 37, "37|old|M|student|55105")

    with pytest.raises(DataError, match=r"u\.user: line 37: age 'old' is not an integer"):
        load_users(copy_dir)


def test_missing_file_says_how_to_get_it(copy_dir: Path) -> None:
    (copy_dir / "u.data").unlink()

    with pytest.raises(DataError) as caught:
        load_ratings(copy_dir)

    message = str(caught.value)
    assert message.startswith(f"{copy_dir / 'u.data'}: file not found")
    assert "recsys data download movielens-100k" in message
    assert "RECSYS_MOVIELENS_DIR" in message


def test_missing_folder_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="recsys data download movielens-100k"):
        load_items(tmp_path / "nowhere")


def test_empty_file(copy_dir: Path) -> None:
    (copy_dir / "u.data").write_bytes(b"")

    with pytest.raises(DataError, match=r"u\.data: file is empty"):
        load_ratings(copy_dir)


def test_genre_names_come_from_u_genre(copy_dir: Path) -> None:
    with_file = load_items(copy_dir)["genres"].tolist()
    (copy_dir / "u.genre").write_text(
        "".join(f"{name.upper()}|{i}\n" for i, name in enumerate(GENRES)), encoding="latin-1"
    )
    renamed = load_items(copy_dir)["genres"].tolist()
    (copy_dir / "u.genre").unlink()
    fallback = load_items(copy_dir)["genres"].tolist()

    assert renamed == [[name.upper() for name in genres] for genres in with_file]
    assert fallback == with_file
