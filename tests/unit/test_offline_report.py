"""The evaluation report's protocol on hand-made cases: who and what counts as relevant."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from offline.generators.matrix import IdIndex
from offline.intervals import comparisons
from offline.pipeline import FrameSource
from offline.report import (
    Evaluation,
    evaluation_report,
    metrics_of,
    recommendations_frame,
    render_markdown,
)
from offline.spec import Fitted, JobSpec, RankedLists


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


class _Fixed:
    """A generator alone that recommends fixed lists (rows: training users)."""

    name = "fixed"

    def __init__(self, items: list[list[int]]) -> None:
        self.items = np.array(items, dtype=np.int32)

    def recommend(
        self, user_indices: npt.ArrayLike, n: int, exclude_seen: bool = True
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        items = self.items[np.asarray(user_indices, dtype=np.int64), :n]
        return items, np.zeros(items.shape, dtype=np.float32)


def _report(fitted: Fitted, lists: RankedLists, test: pd.DataFrame) -> dict[str, Any]:
    spec = JobSpec(source=FrameSource(test), label="case", holdout=test, k=2)
    pipeline: Any = SimpleNamespace(rows={"ingest": {"interactions": 6}}, drops={})
    return evaluation_report(fitted, lists, test, spec, pipeline)


def test_report_intervals_and_the_paired_difference(
    case: tuple[Fitted, RankedLists, pd.DataFrame],
) -> None:
    fitted, lists, test = case
    # the one generator puts u1's relevant c first, where the final lists have it second
    fitted = replace(fitted, members=[_Fixed([[2, 1], [2, -1], [-1, -1]])])
    report = _report(fitted, lists, test)
    assert set(report["baselines"]) == {"fixed", "popularity"}
    assert report["interval_method"] == {
        "kind": "percentile bootstrap over users",
        "level": 0.95,
        "resamples": 1000,
        "seed": 42,
    }
    accuracy = ["map@2", "ndcg@2", "precision@2", "recall@2"]
    assert set(report["intervals"]) == {"final", "fixed", "popularity"}
    for name, values in [("final", report["metrics"]), *report["baselines"].items()]:
        assert list(report["intervals"][name]) == accuracy
        for key in accuracy:
            low, high = report["intervals"][name][key]
            assert low <= values[key] <= high, (name, key)
    versus = report["versus_best_single"]
    assert versus["generator"] == "fixed" and versus["by"] == "ndcg@2"
    # u1: final nDCG d / (1 + d), fixed 1 / (1 + d); u9 the same popular list in both.
    d = 1 / np.log2(3)
    gap = (d / (1 + d) - 1 / (1 + d)) / 2
    assert versus["ndcg@2"]["difference"] == pytest.approx(gap)
    assert versus["ndcg@2"]["difference"] == pytest.approx(
        report["metrics"]["ndcg@2"] - report["baselines"]["fixed"]["ndcg@2"], abs=1e-15
    )
    # two users, differences {2 * gap, 0}: resampled means are 2 * gap, gap or 0
    assert versus["ndcg@2"]["interval"] == pytest.approx([2 * gap, 0.0])
    assert versus["precision@2"] == {"difference": 0.0, "interval": [0.0, 0.0]}

    markdown = render_markdown(report, "v1")
    final_row = next(line for line in markdown.splitlines() if line.startswith("| final"))
    low, high = report["intervals"]["final"]["ndcg@2"]
    assert f"{report['metrics']['ndcg@2']:.4f} ({low:.3f}-{high:.3f})" in final_row
    assert "In brackets: 95 % intervals, a percentile bootstrap over users" in markdown
    assert (
        "Final lists minus the best single generator (fixed, by ndcg@2), paired over the same "
        f"users: ndcg@2 {gap:+.4f} (95 % CI {2 * gap:+.4f} to +0.0000)"
    ) in markdown


def test_comparisons_take_the_best_generator_alone() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(300)

    def lists(shift: float) -> dict[str, npt.NDArray[np.float64]]:
        return {m: np.clip(base + shift, 0, 1) for m in ("map", "ndcg", "precision", "recall")}

    per_user = {
        "final": lists(0.02),
        "als": lists(-0.05),
        "ease": lists(0.0),
        "blend": lists(0.05),  # better than either, but not a generator alone
        "popularity": lists(-0.2),
    }
    out = comparisons(per_user, ["als", "ease"], k=10)
    assert list(out["intervals"]) == list(per_user)
    assert out["versus_best_single"]["generator"] == "ease"
    ndcg = out["versus_best_single"]["ndcg@10"]
    assert ndcg["difference"] == pytest.approx(
        per_user["final"]["ndcg"].mean() - per_user["ease"]["ndcg"].mean()
    )
    assert ndcg["interval"][0] <= ndcg["difference"] <= ndcg["interval"][1]
    assert ndcg["interval"][0] > 0  # paired, the small gain is clear of 0
    final_low, _ = out["intervals"]["final"]["ndcg@10"]
    _, ease_high = out["intervals"]["ease"]["ndcg@10"]
    assert final_low < ease_high  # unpaired, the two intervals overlap
    assert "versus_best_single" not in comparisons(per_user, [], k=10)


def test_markdown_of_a_report_without_intervals_has_no_brackets(
    case: tuple[Fitted, RankedLists, pd.DataFrame],
) -> None:
    fitted, lists, test = case
    report = _report(fitted, lists, test)  # no generator: nothing to compare against
    assert "versus_best_single" not in report
    assert "In brackets" in render_markdown(report, "v1")
    for key in ("interval_method", "intervals"):
        del report[key]
    markdown = render_markdown(report, "v1")
    final_row = next(line for line in markdown.splitlines() if line.startswith("| final"))
    assert final_row.startswith("| final (ranked) | 0.6250 | 0.6934 |")
    assert "In brackets" not in markdown and "best single" not in markdown
