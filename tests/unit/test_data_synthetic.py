"""Synthetic generator: realistic structure, determinism, chunked writing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared.data.catalog import DatasetPaths, load_dataset
from shared.data.frame import INTERACTION_COLUMNS
from shared.data.interactions import load_interactions
from shared.data.synthetic import (
    SyntheticOptions,
    SyntheticSpec,
    build_world,
    default_sizes,
    generate,
    generate_block,
)
from shared.data.synthetic_io import write_synthetic
from shared.errors import DataError

N = 50_000


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return generate(N, seed=11).interactions


def top_decile_share(counts: np.ndarray) -> float:
    ordered = np.sort(counts)[::-1]
    return float(ordered[: max(1, len(ordered) // 10)].sum() / ordered.sum())


def test_sizes_and_schema(sample: pd.DataFrame) -> None:
    n_users, n_items = default_sizes(N)

    assert list(sample.columns) == list(INTERACTION_COLUMNS)
    assert len(sample) == N
    assert sample["user_id"].nunique() == n_users  # every user has at least one event
    assert sample["item_id"].nunique() <= n_items
    assert set(sample["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert sample["user_id"].str.fullmatch(r"u\d+").all()
    assert sample["item_id"].str.fullmatch(r"i\d+").all()


def test_default_sizes_are_proportionate() -> None:
    assert default_sizes(20_000_000) == (200_000, 40_000)
    assert default_sizes(1_000) == (100, 50)
    assert default_sizes(10) == (10, 10)


def test_item_popularity_has_a_long_tail(sample: pd.DataFrame) -> None:
    # Top 10% of items take > 40% of events; a uniform catalogue would give 10%.
    assert top_decile_share(sample["item_id"].value_counts().to_numpy()) > 0.4


def test_user_activity_is_long_tailed(sample: pd.DataFrame) -> None:
    counts = sample["user_id"].value_counts().to_numpy()
    assert top_decile_share(counts) > 0.3
    assert counts.min() == 1
    assert counts.max() > 10 * np.median(counts)


def test_users_stick_to_their_genres_and_rate_them_higher() -> None:
    world = build_world(SyntheticSpec.build(N, seed=3))
    block = generate_block(world, 0)
    liked = world.user_genres[block.users]
    match = (liked == world.item_genre[block.items][:, None]).any(axis=1) | (
        liked == world.item_second[block.items][:, None]
    ).any(axis=1)

    assert match.mean() > 0.75  # taste_share 0.8 plus popular picks that happen to match
    assert block.ratings[match].mean() - block.ratings[~match].mean() > 0.8


def test_visible_genre_concentration() -> None:
    data = generate(N, seed=5)
    primary = data.items.set_index("item_id")["genres"].str[0]
    events = data.interactions.assign(genre=data.interactions["item_id"].map(primary))
    active = events.groupby("user_id").filter(lambda g: len(g) >= 50)
    top_share = active.groupby("user_id")["genre"].agg(lambda g: g.value_counts().iloc[0] / len(g))
    catalogue_top = events["genre"].value_counts(normalize=True).iloc[0]

    assert top_share.mean() > catalogue_top + 0.15


def test_events_come_in_sessions(sample: pd.DataFrame) -> None:
    users = sample["user_id"].to_numpy()
    stamps = sample["timestamp"].to_numpy()
    same_user = users[1:] == users[:-1]
    gaps = np.diff(stamps)[same_user]

    assert (gaps >= 0).all()  # each user's events are in time order
    assert (gaps < 3_600).mean() > 0.7  # most next events are within the session
    assert (gaps > 86_400).mean() > 0.05  # but sessions are days apart


def test_timestamps_span_the_configured_period() -> None:
    options = SyntheticOptions(start=1_000_000_000, days=30)
    stamps = generate(5_000, seed=1, options=options).interactions["timestamp"]

    assert stamps.min() >= 1_000_000_000
    assert stamps.max() <= 1_000_000_000 + 30 * 86_400
    assert stamps.max() - stamps.min() > 20 * 86_400


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = generate(10_000, seed=42)
    again = generate(10_000, seed=42)
    other = generate(10_000, seed=43)

    pd.testing.assert_frame_equal(first.interactions, again.interactions)
    pd.testing.assert_frame_equal(first.items, again.items)
    assert not first.interactions.equals(other.interactions)


def test_items_metadata() -> None:
    items = generate(5_000, n_items=300, seed=2).items

    assert len(items) == 300
    assert items["item_id"].tolist()[:2] == ["i1", "i2"]
    assert items["title"].iloc[122] == "Synthetic Title 123"
    assert items["year"].between(1920, 2021).all()
    assert all(1 <= len(genres) <= 2 for genres in items["genres"])


def test_written_parts_equal_generated_frame_whatever_the_chunk_size(tmp_path: Path) -> None:
    n = 40_000
    small = write_synthetic(tmp_path / "small", n, seed=9, chunk_size=7_000)
    large = write_synthetic(tmp_path / "large", n, seed=9, chunk_size=1_000_000)
    expected = generate(n, seed=9)

    assert small.n_parts == 6
    assert len(list((tmp_path / "small" / "interactions").glob("part-*.parquet"))) == 6
    assert large.n_parts == 1
    for folder in ("small", "large"):
        written = load_interactions(tmp_path / folder / "interactions")
        pd.testing.assert_frame_equal(written, expected.interactions)
    items = pd.read_parquet(tmp_path / "small" / "items.parquet")
    assert items["item_id"].tolist() == expected.items["item_id"].tolist()
    assert [list(g) for g in items["genres"]] == expected.items["genres"].tolist()
    meta = json.loads((tmp_path / "small" / "synthetic.json").read_text())
    assert (meta["seed"], meta["n_interactions"], meta["n_users"]) == (9, n, 400)


def test_synthetic_folder_opens_by_path_and_by_name(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "synthetic", 3_000, seed=1)
    paths = DatasetPaths(movielens_dir=tmp_path / "none", datasets_dir=tmp_path)

    by_name, _ = load_dataset("synthetic", paths)
    by_path, _ = load_dataset(str(tmp_path / "synthetic"), paths)

    assert len(by_name) == len(by_path) == 3_000


def test_rewrite_replaces_old_output_but_refuses_foreign_folders(tmp_path: Path) -> None:
    out = tmp_path / "synthetic"
    write_synthetic(out, 20_000, seed=1, chunk_size=5_000)
    write_synthetic(out, 6_000, seed=1, chunk_size=5_000)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")

    assert len(list((out / "interactions").iterdir())) == 2  # no parts left from the first
    assert len(load_interactions(out / "interactions")) == 6_000
    with pytest.raises(DataError, match="is not a synthetic dataset; refusing to overwrite"):
        write_synthetic(foreign, 1_000)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_interactions": 10, "n_users": 11}, r"n_users \(11\) exceeds n_interactions \(10\)"),
        ({"n_interactions": 0}, "must be at least 1"),
        ({"n_interactions": 100, "n_items": 5}, r"n_genres \(18\) must be between 1 and n_items"),
    ],
)
def test_impossible_sizes_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(**kwargs)


def test_a_million_events_take_seconds_not_minutes() -> None:
    started = time.perf_counter()
    data = generate(1_000_000, seed=0)
    elapsed = time.perf_counter() - started

    assert len(data.interactions) == 1_000_000
    assert elapsed < 20  # about 1 s on a 2-core machine; 20M take 16 to 23 s
