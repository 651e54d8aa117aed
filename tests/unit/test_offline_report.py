"""The evaluation report's protocol on hand-made cases: who and what counts as relevant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from offline.generators.matrix import IdIndex
from offline.report import Evaluation, metrics_of, recommendations_frame
from offline.spec import Fitted, RankedLists


def _frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "item_id": [i for _, i in rows],
            "rating": np.ones(len(rows), dtype=np.float32),
            "timestamp": np.arange(len(rows), dtype=np.int64),
        }
    )


@pytest.fixture
def case() -> tuple[Fitted, RankedLists, pd.DataFrame]:
    # Items a, b, c; a is the most popular (3 users), then b (2), then c (1).
    train = _frame([("u1", "a"), ("u2", "a"), ("u2", "b"), ("u3", "a"), ("u3", "b"), ("u3", "c")])
    index = IdIndex.from_frames(train)
    matrix = index.matrix(train)
    popularity = np.diff(matrix.tocsc().indptr).astype(np.int64)
    fitted = Fitted(index, matrix, [], popularity, None, None, {}, {})
    # u1's list: b then c; u2's: c; u3: nothing left to recommend.
    items = np.array([[1, 2], [2, -1], [-1, -1]], dtype=np.int32)
    scores = np.array([[2.0, 1.0], [1.0, -np.inf], [-np.inf, -np.inf]], dtype=np.float32)
    lists = RankedLists(items, scores, [["als", "ease"], ["als"], []])
    test = _frame(
        [
            ("u1", "c"),  # hit at rank 2
            ("u1", "z"),  # an item never seen in training: relevant, unreachable
            ("u2", "a"),  # already in u2's training history: removed from the truth
            ("u9", "a"),  # a user without history: gets the popular list (a first)
        ]
    )
    return fitted, lists, test


def test_truth_counts_and_cold_users(case: tuple[Fitted, RankedLists, pd.DataFrame]) -> None:
    fitted, lists, test = case
    ev = Evaluation(fitted, lists, test, k=2)
    assert ev.counts == {
        "test_rows": 4,
        "test_users": 3,
        "new_users": 1,
        "unknown_items": 1,
        "rows_of_unknown_items": 1,
        "pairs_seen_in_training": 1,
    }
    # u2 has nothing left to find, so only u1 and the new user u9 are evaluated.
    assert len(ev.users) == 2
    assert ev.recommended.tolist() == [[1, 2], [0, 1]]  # u9 gets the popular a, b


def test_metrics_by_hand(case: tuple[Fitted, RankedLists, pd.DataFrame]) -> None:
    fitted, lists, test = case
    ev = Evaluation(fitted, lists, test, k=2)
    m = metrics_of(ev.recommended, ev, fitted.popularity, n_train_users=3)
    # u1: relevant {c, z}; hit at rank 2 -> P 1/2, R 1/2, AP (1/2)/2 = 1/4,
    #     nDCG = (1/log2 3) / (1 + 1/log2 3).
    # u9: relevant {a}; hit at rank 1 -> P 1/2, R 1, AP 1, nDCG 1.
    d = 1 / np.log2(3)
    assert m["precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert m["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["map@2"] == pytest.approx((0.25 + 1.0) / 2)
    assert m["ndcg@2"] == pytest.approx((d / (1 + d) + 1.0) / 2)
    assert m["coverage@2"] == pytest.approx(1.0)  # a, b and c all shown
    assert m["users"] == 2


def test_recommendations_frame_lists_every_evaluated_user(
    case: tuple[Fitted, RankedLists, pd.DataFrame],
) -> None:
    fitted, lists, test = case
    frame = recommendations_frame(fitted, lists, test, k=2)
    assert frame.to_dict("records") == [
        {"user_id": "u1", "item_id": "b", "rank": 1, "score": 2.0},
        {"user_id": "u1", "item_id": "c", "rank": 2, "score": 1.0},
        {"user_id": "u9", "item_id": "a", "rank": 1, "score": 0.0},
        {"user_id": "u9", "item_id": "b", "rank": 2, "score": -1.0},
    ]
