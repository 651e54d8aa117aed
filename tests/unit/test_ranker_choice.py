"""The ranker's extra features (item age and trend, co-visitation with recent items, genre
affinity), their online fallback, and the choice of what a bundle serves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp  # type: ignore[import-untyped]
import torch

from offline.generators.covisit import CovisitationGenerator
from offline.generators.popularity import PopularityGenerator
from offline.ranker_training import (
    CandidateSet,
    TrainConfig,
    _choose,
    build_candidates,
    feature_context,
    genre_matrix,
    train_ranker,
)
from shared.online_features import UnproposedRows, unproposed_features
from shared.ranker import (
    RECENT_ITEMS,
    SPEC_FILE,
    FeatureSpec,
    Ranker,
    extra_names,
    feature_names,
    item_time_features,
)

DAY = 86_400


def test_item_time_features_by_hand() -> None:
    # item 0: first seen 10 days before the newest row, one of its 2 rows recent;
    # item 1: only recent; item 2: no rows at all.
    items = np.array([0, 0, 1])
    seconds = np.array([0, 9 * DAY, 10 * DAY])
    out = item_time_features(items, seconds, 3, window_s=2 * DAY)
    np.testing.assert_allclose(out["item_log_age"], np.log1p([10.0, 0.0, 0.0]), rtol=1e-6)
    want_trend = [np.log1p(1) - np.log1p(2), 0.0, 0.0]
    np.testing.assert_allclose(out["item_trend"], want_trend, rtol=1e-6, atol=1e-7)
    assert all(v.dtype == np.float32 for v in out.values())


def test_feature_names_with_extras_and_unknown_ones() -> None:
    names = feature_names(["ease"], ("item_log_age", "covisit_recent"))
    assert names[-2:] == ("item_log_age", "covisit_recent")
    assert extra_names(names) == ("item_log_age", "covisit_recent")
    assert extra_names(feature_names(["ease"])) == ()
    with pytest.raises(ValueError, match="unknown extra"):
        feature_names(["ease"], ("shoe_size",))


def _log(n_users: int = 12, n_items: int = 9, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    users, items, seconds = [], [], []
    for u in range(n_users):
        for i in rng.choice(n_items - 1, size=6, replace=False):  # the last item: never seen
            users.append(u)
            items.append(int(i))
            seconds.append(int(rng.integers(0, 30 * DAY)))
    return np.array(users), np.array(items), np.array(seconds)


def test_recent_items_are_each_users_newest() -> None:
    users, items, seconds = _log()
    context = feature_context((12, 9), users, items, seconds)
    for u in range(12):
        mine = np.nonzero(users == u)[0]
        newest = mine[np.argsort(-seconds[mine], kind="stable")][:RECENT_ITEMS]
        assert set(context.recent[u].indices) == set(items[newest])


def test_pair_features_equal_their_definitions() -> None:
    users, items, seconds = _log()
    train = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(12, 9))
    genres_of = [["a"], ["b"], ["a", "b"], [], ["c"], ["a"], ["b", "c"], ["c"], ["a"]]
    context = feature_context((12, 9), users, items, seconds, genre_matrix(genres_of))
    covisit = CovisitationGenerator(neighbours=4).fit(train)
    members = [PopularityGenerator().fit(train), covisit]
    cands = build_candidates(members, train, 5, context=context)
    names = list(cands.names)
    assert extra_names(names) == ("item_log_age", "item_trend", "covisit_recent", "genre_affinity")
    similarity = covisit.similarity.toarray()
    x = train.toarray() > 0
    for row, user in enumerate(cands.users):
        recent = context.recent[user].indices
        for col, item in enumerate(cands.items[row]):
            feats = dict(zip(names, cands.features[row, col], strict=True))
            if item < 0:
                assert not cands.features[row, col].any()
                continue
            assert feats["covisit_recent"] == pytest.approx(similarity[recent, item].sum())
            seen = np.nonzero(x[user])[0]
            shares = [np.mean([g in genres_of[s] for s in seen]) for g in genres_of[item]]
            assert feats["genre_affinity"] == pytest.approx(np.mean(shares) if shares else 0.0)
            age = context.item_columns["item_log_age"][item]
            assert feats["item_log_age"] == pytest.approx(age)


def test_no_metadata_and_no_covisitation_no_such_features() -> None:
    users, items, seconds = _log()
    train = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(12, 9))
    assert genre_matrix(None) is None and genre_matrix([[], []]) is None
    context = feature_context((12, 9), users, items, seconds)
    cands = build_candidates([PopularityGenerator().fit(train)], train, 5, context=context)
    assert extra_names(cands.names) == ("item_log_age", "item_trend")


def _spec_with_extras() -> FeatureSpec:
    names = feature_names(["ease"], ("item_log_age", "item_trend", "covisit_recent"))
    features = np.random.default_rng(0).standard_normal((40, len(names))).astype(np.float32)
    return FeatureSpec.fit(names, features, hidden=(4,), top_n=10)


def test_unproposed_rows_take_item_columns_and_zero_pair_features() -> None:
    spec = _spec_with_extras()
    columns = {
        "item_log_age": np.array([1.5, 2.5], np.float32),
        "item_trend": np.array([-0.5, 0.0], np.float32),
    }
    rows = unproposed_features(spec, np.array([3, 7]), 4, columns)
    got = [dict(zip(spec.names, r, strict=True)) for r in rows]
    assert [g["item_log_age"] for g in got] == [1.5, 2.5]
    assert [g["item_trend"] for g in got] == [-0.5, 0.0]
    assert all(g["covisit_recent"] == 0.0 and g["ease_z"] == 0.0 for g in got)
    precomputed = UnproposedRows(spec, np.array([3, 7]), columns)
    np.testing.assert_array_equal(precomputed.rows(np.array([1, 0]), 4), rows[::-1])
    with pytest.raises(ValueError, match="item_log_age"):
        unproposed_features(spec, np.array([3]), 4)  # a catalogue without the column


def test_prior_only_ranker_scores_its_weights_and_round_trips(tmp_path: Path) -> None:
    spec = _spec_with_extras()
    ranker = Ranker.prior_only(spec, {"ease_z": 2.0, "item_trend": -1.0}, "blend", "cpu")
    assert ranker.spec.hidden == () and ranker.spec.serves == "blend"
    x = np.random.default_rng(2).standard_normal((6, len(spec.names))).astype(np.float32)
    want = 2.0 * x[:, 0] - x[:, spec.names.index("item_trend")]
    np.testing.assert_allclose(ranker.score(x), want, rtol=1e-5, atol=1e-6)
    loaded = Ranker.load(ranker.save(tmp_path / "r"), "cpu")
    assert loaded.spec == ranker.spec
    np.testing.assert_array_equal(loaded.score(x), ranker.score(x))
    with pytest.raises(ValueError, match="unknown features"):
        Ranker.prior_only(spec, {"nope": 1.0}, "x", "cpu")


def test_a_spec_written_before_serves_loads_as_the_ranker(tmp_path: Path) -> None:
    folder = Ranker.new(_spec_with_extras(), "cpu").save(tmp_path / "old")
    raw = json.loads((folder / SPEC_FILE).read_text())
    del raw["serves"]
    (folder / SPEC_FILE).write_text(json.dumps(raw))
    assert Ranker.load(folder, "cpu").spec.serves == "ranker"


def _two_members(n_users: int = 40, n_cands: int = 12) -> tuple[CandidateSet, np.ndarray]:
    """Candidates of members a and b; the labels follow b's z-score exactly."""
    rng = np.random.default_rng(0)
    names = feature_names(["a", "b"])
    features = rng.standard_normal((n_users, n_cands, len(names))).astype(np.float32)
    b_z = features[:, :, names.index("b_z")]
    labels = b_z >= np.sort(b_z, axis=1)[:, [-3]]  # each user's best 3 by b
    items = np.tile(np.arange(n_cands, dtype=np.int32), (n_users, 1))
    users = np.arange(n_users, dtype=np.int64)
    return CandidateSet(users, items, features, names, 10), labels


def test_the_bundle_serves_the_best_contender_and_says_by_how_much() -> None:
    from offline.ranker_training import TrainReport

    cands, labels = _two_members()
    flat = cands.features.reshape(-1, len(cands.names))
    spec = FeatureSpec.fit(cands.names, flat, (4,), 10, {"a_z": 1.0, "b_z": 0.2})
    untrained = Ranker.new(spec, "cpu")  # equals the blend: a tie, so not served
    report = TrainReport()
    served = _choose(untrained, cands, labels, TrainConfig(k=3, device="cpu"), report)
    assert report.served == "b" and served.spec.serves == "b" and report.default == "blend"
    assert set(report.compared) == {"ranker", "blend", "a", "b"}
    assert report.versus["b"]["low"] > 0 and set(report.versus) == {"ranker", "a", "b"}
    assert report.compared["b"]["ndcg@3"] == pytest.approx(1.0)
    assert report.compared["ranker"] == report.compared["blend"]
    np.testing.assert_array_equal(
        served.score(flat), flat[:, cands.names.index("b_z")].astype(np.float32)
    )


def test_a_contender_ahead_by_noise_alone_does_not_replace_the_blend() -> None:
    from offline.ranker_training import TrainReport

    cands, _ = _two_members(n_users=60)
    rng = np.random.default_rng(5)
    labels = rng.random(cands.items.shape) < 0.25  # nothing predicts these
    flat = cands.features.reshape(-1, len(cands.names))
    spec = FeatureSpec.fit(cands.names, flat, (4,), 10, {"a_z": 1.0, "b_z": 1.0})
    report = TrainReport()
    served = _choose(Ranker.new(spec, "cpu"), cands, labels, TrainConfig(k=3, device="cpu"), report)
    assert report.served == "blend" and served.spec.serves == "blend"
    assert all(v["low"] <= 0 for v in report.versus.values())


def test_a_ranker_that_learns_the_signal_is_served() -> None:
    torch.manual_seed(0)
    cands, labels = _two_members(n_users=300)
    config = TrainConfig(
        hidden=(8,), epochs=30, lr=1e-2, device="cpu", k=3, prior=(("a_z", 1.0),), patience=30
    )
    ranker, report = train_ranker(cands, labels, config)
    assert report.served in ("ranker", "b")  # both order by b's z-score in the end
    assert report.compared[report.served]["ndcg@3"] > report.compared["a"]["ndcg@3"]
    assert report.compare_users == 60 and report.best_epoch > 0
    assert ranker.spec.serves == report.served


def test_early_stopping_stops_after_patience() -> None:
    cands, labels = _two_members(n_users=100)
    rng = np.random.default_rng(1)
    noise = rng.random(labels.shape) < 0.25  # labels nothing predicts
    config = TrainConfig(hidden=(4,), epochs=40, device="cpu", k=3, patience=2, lr=1e-4)
    _, report = train_ranker(cands, noise, config)
    assert report.epochs_run <= report.best_epoch + 2 < 40 + 2
    assert report.epochs_run < 40
