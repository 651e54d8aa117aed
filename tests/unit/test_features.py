"""The pure feature functions shared by the offline pipeline and the online tier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt

from shared.data.frame import interactions_frame
from shared.features import (
    USER_FEATURE_COLUMNS,
    genre_multi_hot,
    genre_vocabulary,
    item_stats,
    popularity,
    user_features,
)


def _log() -> pd.DataFrame:
    return interactions_frame(
        ["u1", "u1", "u2", "u1", "u3"],
        ["a", "b", "a", "c", "a"],
        [4.0, 2.0, 5.0, 3.0, 1.0],
        [100, 300, 200, 250, 50],
    )


def test_user_features_counts_means_times_and_recency() -> None:
    out = user_features(_log(), reference_time=1000)
    assert tuple(out.columns) == USER_FEATURE_COLUMNS
    u1 = out.set_index("user_id").loc["u1"]
    assert u1["n_interactions"] == 3
    assert u1["n_items"] == 3
    assert u1["mean_rating"] == 3.0
    assert (u1["first_timestamp"], u1["last_timestamp"], u1["recency_s"]) == (100, 300, 700)
    assert list(out["user_id"]) == ["u1", "u2", "u3"]


def test_features_do_not_depend_on_row_order_or_on_other_users() -> None:
    log = _log()
    shuffled = log.sample(frac=1.0, random_state=7)
    pdt.assert_frame_equal(user_features(log, 500), user_features(shuffled, 500))
    one = user_features(log[log["user_id"] == "u1"], 500)
    pdt.assert_frame_equal(one, user_features(log, 500).iloc[:1])


def test_item_stats_and_popularity_rank_ties_share_the_best_rank() -> None:
    stats = item_stats(_log(), reference_time=300)
    assert list(stats["n_interactions"]) == [3, 1, 1]
    assert list(stats["n_users"]) == [3, 1, 1]
    pop = popularity(stats)
    assert list(pop["popularity_rank"]) == [1, 2, 2]
    np.testing.assert_allclose(pop["popularity_percentile"], [1.0, 2 / 3, 2 / 3])


def test_genre_multi_hot_follows_the_vocabulary_and_ignores_unknown_genres() -> None:
    items = pd.DataFrame({"item_id": ["b", "a"], "genres": [["Drama"], ["Comedy", "Drama"]]})
    vocab = genre_vocabulary(items)
    assert vocab == ("Comedy", "Drama")
    hot = genre_multi_hot(items, ("Drama", "Western"))
    assert list(hot.columns) == ["item_id", "genre_Drama", "genre_Western"]
    assert hot["item_id"].tolist() == ["a", "b"]
    assert hot["genre_Drama"].tolist() == [1, 1]
    assert hot["genre_Western"].tolist() == [0, 0]
