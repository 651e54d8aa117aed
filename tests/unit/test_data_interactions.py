"""Generic CSV/Parquet loader, column mappings, timestamp units and frame validation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.data.frame import INTERACTION_COLUMNS, interactions_frame, validate_interactions
from shared.data.interactions import load_interactions, parse_column_mapping
from shared.errors import DataError

MAPPING = "user=userId,item=movieId,rating=rating,timestamp=timestamp"
# 2020-01-01T00:00:00Z and one day later, in seconds.
JAN_1 = 1_577_836_800
JAN_2 = JAN_1 + 86_400


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_column_mapping() -> None:
    assert parse_column_mapping(f" {MAPPING.replace(',', ' , ')} ") == {
        "user": "userId",
        "item": "movieId",
        "rating": "rating",
        "timestamp": "timestamp",
    }
    assert parse_column_mapping("item=b,user=a") == {"item": "b", "user": "a"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("user=a,item", "expected key=column, found 'item'"),
        ("user=a,item=", "expected key=column, found 'item='"),
        ("user=a,item=b,movie=c", "unknown key 'movie'; use user, item, rating, timestamp"),
        ("user=a,user=b,item=c", "'user' is given twice"),
        ("user=a,rating=r", "item must be given"),
    ],
)
def test_bad_column_mapping(text: str, reason: str) -> None:
    with pytest.raises(DataError) as caught:
        parse_column_mapping(text)
    assert str(caught.value) == f"column mapping {text!r}: {reason}"


def test_csv_with_mapping_keeps_ids_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ratings.csv",
        f"userId,movieId,rating,timestamp,tag\n007,42,4.5,{JAN_1}000,x\n7,42,3,{JAN_2}000,y\n",
    )

    frame = load_interactions(path, parse_column_mapping(MAPPING))

    assert list(frame.columns) == list(INTERACTION_COLUMNS)
    assert frame["user_id"].tolist() == ["007", "7"]
    assert frame["item_id"].tolist() == ["42", "42"]
    assert frame["rating"].tolist() == [4.5, 3.0]
    assert frame["rating"].dtype == np.float32
    assert frame["timestamp"].tolist() == [JAN_1, JAN_2]  # milliseconds detected


@pytest.mark.parametrize("delimiter", ["\t", ";", "|", ","])
def test_delimiter_is_guessed_from_the_header(tmp_path: Path, delimiter: str) -> None:
    rows = ["user_id,item_id,rating", "u1,i1,5", "u2,i1,1"]
    path = write(tmp_path / "data.txt", "\n".join(r.replace(",", delimiter) for r in rows) + "\n")

    frame = load_interactions(path)

    assert frame["user_id"].tolist() == ["u1", "u2"]
    assert frame["rating"].tolist() == [5.0, 1.0]


def test_given_delimiter_wins(tmp_path: Path) -> None:
    # The header holds more commas than semicolons; only the given delimiter splits it right.
    path = write(tmp_path / "d.csv", "user;item;note\nu1;i1;a,b,c\n")

    frame = load_interactions(path, {"user": "user", "item": "item"}, delimiter=";")

    assert frame[["user_id", "item_id"]].values.tolist() == [["u1", "i1"]]


def test_missing_rating_and_timestamp_get_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "clicks.csv", "visitorid,itemid\n1,10\n1,11\n2,10\n")

    frame = load_interactions(path)

    assert frame["rating"].tolist() == [1.0, 1.0, 1.0]
    assert frame["timestamp"].tolist() == [0, 1, 2]  # file order


@pytest.mark.parametrize(
    "stamps",
    [
        [JAN_1, JAN_2],  # seconds
        [JAN_1 * 1_000 + 999, JAN_2 * 1_000],  # milliseconds
        [JAN_1 * 1_000_000, JAN_2 * 1_000_000 + 5],  # microseconds
        [JAN_1 * 10**9, JAN_2 * 10**9 + 999_999_999],  # nanoseconds
        [float(JAN_1) + 0.75, float(JAN_2)],  # fractional seconds
        ["2020-01-01T00:00:00Z", "2020-01-02T02:00:00+02:00"],
        ["2020-01-01", "2020-01-02 00:00:00"],  # naive: read as UTC
    ],
)
def test_timestamp_units_are_detected(tmp_path: Path, stamps: list[object]) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "ts": stamps}).to_parquet(path)

    frame = load_interactions(path, {"user": "user", "item": "item", "timestamp": "ts"})

    assert frame["timestamp"].tolist() == [JAN_1, JAN_2]
    assert frame["timestamp"].dtype == np.int64


def test_iso_timestamps_in_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "user,item,when\na,x,2020-01-01T00:00:00Z\nb,y,2020-01-02\n")

    frame = load_interactions(path, parse_column_mapping("user=user,item=item,timestamp=when"))

    assert frame["timestamp"].tolist() == [JAN_1, JAN_2]


def test_parquet_datetime_and_integer_ids(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame(
        {
            "uid": [1, 2],
            "iid": [7.0, 8.0],  # ints stored as floats by some writers
            "at": pd.to_datetime(["2020-01-01", "2020-01-02"]).tz_localize("UTC"),
        }
    ).to_parquet(path)

    frame = load_interactions(path, {"user": "uid", "item": "iid", "timestamp": "at"})

    assert frame["user_id"].tolist() == ["1", "2"]
    assert frame["item_id"].tolist() == ["7", "8"]
    assert frame["timestamp"].tolist() == [JAN_1, JAN_2]


def test_folder_of_parquet_parts(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for part in range(3):
        pd.DataFrame(
            {"user_id": [f"u{part}"] * 2, "item_id": ["a", "b"], "rating": [1.0, 2.0]}
        ).to_parquet(folder / f"part-{part:05d}.parquet")

    frame = load_interactions(folder)

    assert len(frame) == 6
    assert sorted(set(frame["user_id"])) == ["u0", "u1", "u2"]


def test_wrong_mapping_names_the_column_and_lists_the_file_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "userId,movieId,stars\n1,2,3\n")

    with pytest.raises(DataError) as caught:
        load_interactions(path, parse_column_mapping(MAPPING))

    assert str(caught.value) == (
        f"{path}: column 'rating' (for rating) not found; the file has columns: "
        "userId, movieId, stars"
    )


def test_unmappable_file_without_mapping(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pd.DataFrame({"who": ["a"], "what": ["b"]}).to_parquet(path)

    with pytest.raises(DataError, match=r"no user column .* the file has columns: who, what"):
        load_interactions(path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1,2,3\n1,2,abc\n", "line 3: rating 'abc' is not a number"),
        ("1,2,3\n,2,3\n", "line 3: userId is missing"),
        ("1,2,3\n1,,3\n", "line 3: movieId is missing"),
        ("1,2,3\n1,2,\n", "line 3: rating is missing"),
        ("1,2,inf\n", "line 2: rating is not a finite number"),
        ("1,2,3\n1,2,nan\n", "line 3: rating 'nan' is not a number"),
    ],
)
def test_bad_csv_values_name_the_line(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path / "r.csv", "userId,movieId,rating\n" + body)

    with pytest.raises(DataError) as caught:
        load_interactions(path)

    assert str(caught.value) == f"{path}: {message}"


def test_bad_timestamp_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user_id,item_id,timestamp\na,b,2020-01-01\na,c,soon\n")

    with pytest.raises(DataError) as caught:
        load_interactions(path)

    assert str(caught.value) == (
        f"{path}: line 3: timestamp 'soon' is neither a number nor an ISO 8601 date"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_interactions(tmp_path / "nope.csv")


def test_validate_accepts_a_canonical_frame() -> None:
    frame = interactions_frame([1, 2], ["a", "b"], [1, 2], [3, 4])

    assert validate_interactions(frame, "test") is frame
    assert frame.dtypes.astype(str).tolist()[2:] == ["float32", "int64"]
    assert frame["user_id"].tolist() == ["1", "2"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="rating"), "src: missing column(s) rating; it has user_id"),
        (
            lambda f: f.assign(user_id=[1, 2, 3]),
            "src: column user_id has dtype int64, expected str",
        ),
        (
            lambda f: f.assign(item_id=pd.Series(["a", 5, "c"], dtype=object)),
            "src: row 2: item_id is not a string",
        ),
        (lambda f: f.assign(item_id=["a", "", "c"]), "src: row 2: item_id is empty"),
        (lambda f: f.assign(rating=[1.0, 2.0, 3.0]), "column rating has dtype float64"),
        (
            lambda f: f.assign(rating=np.array([1, np.nan, 3], dtype=np.float32)),
            "src: row 2: rating is missing",
        ),
        (
            lambda f: f.assign(timestamp=np.array([1, 2, -3], dtype=np.int64)),
            "src: row 3: timestamp is negative",
        ),
        (lambda f: f.assign(timestamp=[1.0, 2.0, 3.0]), "column timestamp has dtype float64"),
    ],
)
def test_validate_names_source_row_and_reason(
    change: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    frame = interactions_frame(["u1", "u2", "u3"], ["a", "b", "c"], [1, 2, 3], [1, 2, 3])

    with pytest.raises(DataError) as caught:
        validate_interactions(change(frame), "src")

    assert message in str(caught.value)


def test_validate_reports_file_lines_when_given() -> None:
    frame = interactions_frame(["u1", "u2"], ["a", "b"], [1, 2], [1, -2])

    with pytest.raises(DataError, match=r"^data\.csv: line 3: timestamp is negative$"):
        validate_interactions(frame, "data.csv", first_line=2)
