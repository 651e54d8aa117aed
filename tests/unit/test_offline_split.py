"""Splits: reproducible, per-user proportions, same rows as the MS Recommenders procedure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from offline.split import benchmark_split, temporal_split, validation_split


def frame(n_users: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 40, size=n_users)
    users = np.repeat([f"u{i}" for i in range(n_users)], sizes)
    rng.shuffle(users)  # users interleaved, as in u.data
    n = len(users)
    return pd.DataFrame(
        {
            "user_id": users,
            "item_id": [f"i{j}" for j in range(n)],
            "rating": np.ones(n, dtype=np.float32),
            "timestamp": rng.integers(0, 1000, size=n).astype(np.int64),
        }
    )


def ms_stratified_reference(df: pd.DataFrame, ratio: float, seed: int) -> set[str]:
    """The MS Recommenders procedure written the way they write it (pandas, sorted)."""
    data = df.copy()
    data["random"] = np.random.RandomState(seed).rand(len(data))
    data = data.sort_values(["user_id", "random"])
    groups = data.groupby("user_id")
    data["rank"] = (groups.cumcount() + 1) / groups["user_id"].transform("count")
    return set(data.loc[data["rank"] <= ratio, "item_id"])


def test_benchmark_split_matches_reference_procedure() -> None:
    df = frame()
    train, test = benchmark_split(df, ratio=0.75, seed=42)
    assert set(train["item_id"]) == ms_stratified_reference(df, 0.75, 42)
    assert len(train) + len(test) == len(df)
    assert not set(train.index) & set(test.index)


def test_benchmark_split_is_reproducible_and_seeded() -> None:
    df = frame()
    a, _ = benchmark_split(df, seed=42)
    b, _ = benchmark_split(df, seed=42)
    c, _ = benchmark_split(df, seed=7)
    assert a.index.equals(b.index)
    assert not a.index.equals(c.index)


def test_benchmark_split_per_user_proportions() -> None:
    df = frame()
    train, _ = benchmark_split(df, ratio=0.75)
    per_user = df.groupby("user_id").size()
    in_train = train.groupby("user_id").size().reindex(per_user.index, fill_value=0)
    # rank / count <= 0.75  <=>  rank <= floor(0.75 * count)
    assert (in_train == np.floor(per_user * 0.75).astype(int)).all()


def test_min_rating_drops_small_users() -> None:
    df = frame()
    train, test = benchmark_split(df, min_rating=10)
    kept = pd.concat([train, test]).groupby("user_id").size()
    assert (kept >= 10).all()


def test_validation_split_is_carved_from_train() -> None:
    train, _ = benchmark_split(frame())
    fit, valid = validation_split(train)
    assert set(fit.index) | set(valid.index) == set(train.index)
    assert not set(fit.index) & set(valid.index)


def test_temporal_split_cuts_at_one_time() -> None:
    df = frame().head(10).assign(timestamp=np.arange(1, 11, dtype=np.int64))
    train, test = temporal_split(df, test_fraction=0.3)
    # cut at sorted position floor(10 * 0.7) = 7 -> timestamp 8: train 1..7, test 8..10
    assert train["timestamp"].tolist() == list(range(1, 8))
    assert test["timestamp"].tolist() == [8, 9, 10]


def test_temporal_split_keeps_a_second_whole() -> None:
    df = frame().head(6).assign(timestamp=np.array([1, 1, 2, 2, 2, 3], dtype=np.int64))
    train, test = temporal_split(df, test_fraction=0.5)
    # position 3 holds timestamp 2: every event at 2 goes to test
    assert train["timestamp"].tolist() == [1, 1]
    assert len(test) == 4
