"""The notebooks' analysis helpers on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from offline.analysis import bundles, dataset, experiments
from offline.generators.matrix import IdIndex
from offline.report import Evaluation
from offline.spec import Fitted, RankedLists
from shared.events import Event, EventType, Shown
from shared.registry import BundleInfo
from shared.storage.factory import open_user_state


def _frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [u for u, _, _ in rows],
            "item_id": [i for _, i, _ in rows],
            "rating": np.ones(len(rows), dtype=np.float32),
            "timestamp": np.array([t for _, _, t in rows], dtype=np.int64),
        }
    )


@pytest.fixture
def lists() -> bundles.BundleLists:
    # Items a (3 users), b (2), c (1), d (1); u1 saw a, u2 a b, u3 a b c d.
    train = _frame(
        [("u1", "a", 1), ("u2", "a", 2), ("u2", "b", 3)]
        + [("u3", i, 4) for i in ("a", "b", "c", "d")]
    )
    index = IdIndex.from_frames(train)
    matrix = index.matrix(train)
    popularity = np.diff(matrix.tocsc().indptr).astype(np.int64)
    fitted = Fitted(index, matrix, [], popularity, None, None, {}, {})
    items = np.array([[1, 2, 3], [2, 3, -1], [-1, -1, -1]], dtype=np.int32)  # u1: b c d
    ranked = RankedLists(items, np.zeros(items.shape, np.float32), [[], [], []])
    test = _frame([("u1", "c", 5), ("u1", "d", 6), ("u2", "d", 7)])
    catalogue = pd.DataFrame(
        {"item_id": ["a", "b", "c", "d"], "genres": [["x"], ["x", "y"], ["y"], []]}
    )
    info = BundleInfo("v1", None, 0.0, "fp", params={"ranker": True})
    return bundles.BundleLists(
        info, {}, catalogue, index, train, test, Evaluation(fitted, ranked, test, 3), popularity
    )


def test_metric_curves_at_each_k(lists: bundles.BundleLists) -> None:
    curves = bundles.metric_curves(lists, [1, 2, 3])
    # u1 (relevant c, d) gets b c d: hits at ranks 2 and 3; u2 (relevant d) gets c d: rank 2.
    assert curves["recall"].tolist() == pytest.approx([0.0, (0.5 + 1.0) / 2, 1.0])
    assert curves["precision"].tolist() == pytest.approx(
        [0.0, (1 / 2 + 1 / 2) / 2, (2 / 3 + 1 / 3) / 2]
    )
    idcg_u1 = 1 + 1 / math.log2(3)
    u1 = (1 / math.log2(3) + 1 / math.log2(4)) / idcg_u1
    u2 = 1 / math.log2(3)
    assert curves["ndcg"].iloc[2] == pytest.approx((u1 + u2) / 2)
    with pytest.raises(ValueError, match="beyond"):
        bundles.metric_curves(lists, [4])


def test_slices_by_history(lists: bundles.BundleLists) -> None:
    table = bundles.slice_table(lists, 3)
    assert table.loc["all", "users"] == 2
    assert table.loc["cold", "users"] == 2  # 1 and 2 training items: both under 10
    assert table.loc["warm", "users"] == 0
    thresholds = bundles.tercile_thresholds(lists)  # histories 1 and 2
    assert (thresholds.cold_below, thresholds.heavy_from) == (2, 2)
    table = bundles.slice_table(lists, 3, thresholds)
    assert table["users"].to_dict() == {"all": 2, "cold": 1, "warm": 0, "heavy": 1}


def test_long_tail_and_beyond_accuracy(lists: bundles.BundleLists) -> None:
    tail = bundles.long_tail_mask(lists.popularity, head_share=0.5)  # head: a, b
    assert tail.tolist() == [False, False, True, True]
    recommended = lists.recommended[:, :2]  # u1: b c; u2: c d
    assert bundles.long_tail_coverage(recommended, tail) == 1.0
    assert bundles.long_tail_share(recommended, tail) == pytest.approx(3 / 4)
    figures = bundles.beyond_accuracy(lists, 2, head_share=0.5)
    assert figures["coverage"] == pytest.approx(3 / 4)
    assert figures["long_tail_share"] == pytest.approx(3 / 4)
    # u1: b {x, y} vs c {y}: Jaccard 1/2; u2: c {y} vs d {}: 0 -> distances 1/2 and 1.
    assert figures["diversity"] == pytest.approx(0.75)
    exposure = bundles.exposure_by_popularity(lists, 2)
    assert exposure["item_id"].tolist() == ["a", "b", "c", "d"]
    assert exposure["times_recommended"].tolist() == [0, 1, 2, 1]


def test_diversity_ignores_empty_slots_and_short_lists() -> None:
    features = np.array([[1, 0], [1, 0], [0, 1]], dtype=bool)
    recommended = np.array([[0, 1, -1], [0, 2, -1], [2, -1, -1]], dtype=np.int32)
    # User 1: identical genres (0); user 2: disjoint (1); user 3 has one item: left out.
    assert bundles.intra_list_diversity(recommended, features) == pytest.approx(0.5)


def test_genre_matrix_columns_are_sorted_names() -> None:
    flags = bundles.genre_matrix(pd.DataFrame({"genres": [["b", "a"], [], ["b"]]}))
    assert flags.tolist() == [[True, True], [False, False], [False, True]]


def test_item_metadata_and_the_note_without_it(lists: bundles.BundleLists) -> None:
    assert bundles.item_metadata(lists.catalogue) == ["genres"]
    full = pd.DataFrame(
        {"item_id": ["a", "b"], "title": ["A", None], "year": [1990, None], "genres": [["x"], []]}
    )
    assert bundles.item_metadata(full) == ["title", "year", "genres"]
    # What publish writes without --items: titles are the ids, no years, no genres.
    bare = pd.DataFrame(
        {"item_id": ["a", "b"], "title": ["a", "b"], "year": [None, None], "genres": [[], []]}
    )
    assert bundles.item_metadata(bare) == []
    uses = {"title": "items are shown by id", "genres": "the genre panel is skipped"}
    assert bundles.metadata_note(full, uses) is None
    assert bundles.metadata_note(bare, uses) == (
        "No item metadata in this bundle (trained from an interactions file without --items):"
        " items are shown by id, and the genre panel is skipped."
    )
    assert bundles.metadata_note(lists.catalogue, uses, "bundle v1") == (
        "No item titles in the item metadata of bundle v1: items are shown by id."
    )


def test_diversity_is_nan_without_genres(lists: bundles.BundleLists) -> None:
    lists.catalogue = lists.catalogue.assign(genres=[[] for _ in range(4)])
    assert math.isnan(bundles.beyond_accuracy(lists, 2)["diversity"])
    table = bundles.compare([lists], 3)
    assert math.isnan(table.loc["v1 (ranker)", "diversity"])
    assert table.loc["v1 (ranker)", "coverage"] > 0


def test_compare_has_a_row_per_bundle(lists: bundles.BundleLists) -> None:
    table = bundles.compare([lists], 3)
    assert table.index.tolist() == ["v1 (ranker)"]
    assert table.loc["v1 (ranker)", "recall"] == pytest.approx(1.0)


def test_dataset_figures() -> None:
    week = 7 * 86_400
    df = _frame([("u1", "a", 0), ("u1", "b", 1), ("u2", "a", week), ("u1", "a", week + 1)])
    activity = dataset.activity_over_time(df, freq="W")
    assert activity["interactions"].tolist() == [2, 2]
    assert activity["active_users"].tolist() == [1, 2]
    assert activity["new_users"].tolist() == [1, 1]
    assert dataset.counts_per(df, "item_id").to_dict() == {"a": 3, "b": 1}
    assert dataset.cumulative_share(np.array([1, 3])).tolist() == [0.75, 1.0]
    assert dataset.gini(np.array([5, 5, 5])) == pytest.approx(0.0)
    assert dataset.gini(np.array([0, 0, 9])) == pytest.approx(2 / 3)  # (n-1)/n for one holder
    assert dataset.head_items(pd.Series([3, 1]), 0.5) == 1
    assert dataset.head_items(pd.Series([2, 1, 1]), 0.75) == 2
    # Users u1 (2 items) then u2; items a (2 users) then b: u2 never saw b.
    assert dataset.occupancy_grid(df, bins=2).tolist() == [[1.0, 1.0], [1.0, 0.0]]
    assert dataset.occupancy_grid(df, bins=1).tolist() == [[3 / 4]]
    summary = dataset.summary(df, "test")
    assert summary["sparsity"] == pytest.approx(1 - 4 / (2 * 2))
    assert summary["items holding half the interactions"] == 1


def test_wilson_interval_matches_the_formula() -> None:
    low, high = experiments.wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    # No successes: the interval is [0, z^2 / (n + z^2)].
    z2 = 1.959964**2
    assert experiments.wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert experiments.wilson_interval(0, 0) == (0.0, 1.0)


def test_bootstrap_ratio_brackets_the_estimate() -> None:
    low, high = experiments.bootstrap_ratio(np.array([1.0, 1.0]), np.array([2.0, 2.0]))
    assert (low, high) == (0.5, 0.5)  # every resample has the same ratio
    num, den = np.array([0.0, 1.0, 2.0, 3.0] * 25), np.full(100, 4.0)
    low, high = experiments.bootstrap_ratio(num, den, seed=1)
    assert low < num.sum() / den.sum() < high


def _impression(user: str, item: str, arm: str, t: float, position: int = 0) -> Event:
    """The old shape: one impression event per item shown."""
    context = {"arm": arm, "bundle": "v1", "surface": "replay", "position": position}
    context["source"] = "precomputed:ease"
    return Event(
        user_id=user, item_id=item, type=EventType.IMPRESSION, timestamp=t, context=context
    )


def _answer(user: str, items: list[str], arm: str, t: float) -> Event:
    """The current shape: one impression event per answer, with the list shown."""
    context = {"arm": arm, "bundle": "v1", "surface": "replay", "request_id": f"r-{user}-{t}"}
    shown = tuple(
        Shown(item_id=item, position=p, source="precomputed:ease") for p, item in enumerate(items)
    )
    return Event(
        user_id=user,
        item_id=items[0],
        type=EventType.IMPRESSION,
        timestamp=t,
        context=context | {"degraded": False},
        shown=shown,
    )


# The same three answers in both shapes: u1 shown a, b; u2 shown a; u3 shown a, c.
OLD_SHAPE = [
    _impression("u1", "a", "control", 1),
    _impression("u1", "b", "control", 1, position=1),
    _impression("u2", "a", "control", 2),
    _impression("u3", "a", "blend", 3),
    _impression("u3", "c", "blend", 3, position=1),
]
NEW_SHAPE = [
    _answer("u1", ["a", "b"], "control", 1),
    _answer("u2", ["a"], "control", 2),
    _answer("u3", ["a", "c"], "blend", 3),
]


@pytest.mark.parametrize("shape", ["old", "new"])
def test_simulated_plays_and_engagement_by_arm(shape: str) -> None:
    shown = OLD_SHAPE if shape == "old" else NEW_SHAPE
    holdout = _frame([("u1", "b", 0), ("u3", "a", 0), ("u3", "c", 0), ("u3", "z", 0)])
    plays = experiments.simulated_plays(experiments.events_frame(shown), holdout)
    assert sorted((p.user_id, p.item_id, p.context["arm"]) for p in plays) == [
        ("u1", "b", "control"),
        ("u3", "a", "blend"),
        ("u3", "c", "blend"),
    ]
    assert all(p.type is EventType.PLAY and p.context["simulated"] is True for p in plays)
    stray = Event(user_id="u2", item_id="q", type=EventType.PLAY)  # never shown: not counted
    events = experiments.events_frame([*shown, *plays, stray])
    table = experiments.engagement_by_arm(events, surface="replay")
    assert table.loc["control", ["users", "impressions", "outcomes"]].tolist() == [2, 3, 1]
    assert table.loc["control", "rate"] == pytest.approx(1 / 3)
    assert table.loc["control", "engaged_share"] == pytest.approx(1 / 2)
    assert table.loc["blend", "rate"] == pytest.approx(1.0)
    low, high = experiments.wilson_interval(1, 2)
    assert table.loc["control", "engaged_low"] == pytest.approx(low)
    assert table.loc["control", "engaged_high"] == pytest.approx(high)
    diff, d_low, d_high = experiments.rate_difference(events, "blend", "control", surface="replay")
    assert diff == pytest.approx(2 / 3)
    assert d_low <= diff <= d_high


def test_answers_explode_into_the_rows_per_item_events_gave() -> None:
    columns = ["user_id", "item_id", "type", "arm", "bundle", "surface", "position", "source"]
    old = experiments.events_frame(OLD_SHAPE)[columns]
    new = experiments.events_frame(NEW_SHAPE)
    assert len(new) == 5
    pd.testing.assert_frame_equal(new[columns], old, check_dtype=False)
    assert new["request_id"].tolist() == ["r-u1-1", "r-u1-1", "r-u2-2", "r-u3-3", "r-u3-3"]
    assert new.groupby("request_id")["event_id"].nunique().eq(1).all()  # one event each
    holdout = _frame([("u1", "b", 0), ("u3", "a", 0), ("u3", "c", 0)])
    tables = []
    for shown in (OLD_SHAPE, NEW_SHAPE, [*OLD_SHAPE[:2], *NEW_SHAPE[1:]]):  # and a mixed log
        frame = experiments.events_frame(shown)
        plays = experiments.simulated_plays(frame, holdout)
        tables.append(
            experiments.engagement_by_arm(
                experiments.events_frame([*shown, *plays]), surface="replay"
            )
        )
    pd.testing.assert_frame_equal(tables[1], tables[0])
    pd.testing.assert_frame_equal(tables[2], tables[0])


def test_events_round_trip_through_an_event_log() -> None:
    from shared.storage.factory import open_event_log

    log = open_event_log("memory://")
    log.init_schema()
    shown = [_impression("u1", "a", "control", 1), _answer("u2", ["b", "c"], "blend", 2)]
    experiments.append_events(log, shown)
    log.append([("u3", b"not an event")])
    frame = experiments.read_events(log, group="analysis-test", idle_polls=1)
    assert sorted(zip(frame["user_id"], frame["item_id"], strict=True)) == [
        ("u1", "a"),
        ("u2", "b"),
        ("u2", "c"),
    ]
    assert set(frame["arm"]) == {"control", "blend"}
    log.close()


def test_seed_recent_items_keeps_time_order() -> None:
    store = open_user_state("memory://", ttl_s=3600, recent_cap=2)
    store.init_schema()
    train = _frame([("u1", "a", 3), ("u1", "b", 1), ("u1", "c", 2), ("u2", "a", 1)])
    assert experiments.seed_recent_items(store, train, ["u1"]) == 1
    state = store.get("u1")
    assert state is not None
    assert state.recent_items == ["a", "c"]  # most recent first, capped at 2
    assert store.get("u2") is None
    store.close()
