"""The shared ranker: feature order, spec files, scoring, device choice; training pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp  # type: ignore[import-untyped]

from offline.generators.popularity import PopularityGenerator
from offline.ranker_training import CandidateSet, _pairs, candidate_labels, candidate_union
from shared.device import resolve_torch_device
from shared.ranker import FeatureSpec, Ranker, assemble_features, feature_names


def spec(n_features: int = 4) -> FeatureSpec:
    names = [f"f{i}" for i in range(n_features)]
    features = np.random.default_rng(0).standard_normal((50, n_features)).astype(np.float32)
    return FeatureSpec.fit(names, features, hidden=(8,), top_n=5)


def test_feature_names_and_assembled_columns_line_up() -> None:
    names = feature_names(["ease", "als"])
    assert names == (
        "ease_z", "ease_logrank", "ease_in_top", "als_z", "als_logrank", "als_in_top",
        "item_log_pop", "user_log_history",
    )  # fmt: skip
    z = {"ease": np.array([[1.5, -0.5]]), "als": np.array([[0.0, 2.0]])}
    rank = {"ease": np.array([[0, 7]]), "als": np.array([[3, 1]])}
    x = assemble_features(
        ["ease", "als"],
        z=z,
        rank=rank,
        item_popularity=np.array([[9, 0]]),
        history=np.array([4]),
        top_n=5,
    )
    assert x.shape == (1, 2, len(names)) and x.dtype == np.float32
    row = dict(zip(names, x[0, 1], strict=True))
    assert row["ease_z"] == -0.5
    assert row["ease_logrank"] == pytest.approx(np.log1p(7))
    assert row["ease_in_top"] == 0.0 and row["als_in_top"] == 1.0
    assert row["item_log_pop"] == 0.0
    assert row["user_log_history"] == pytest.approx(np.log1p(4))


def test_spec_json_round_trip_and_constant_features() -> None:
    features = np.ones((10, 2), dtype=np.float32)
    s = FeatureSpec.fit(["a", "b"], features, hidden=(4, 2), top_n=7)
    assert s.std == (1.0, 1.0)  # constant columns are not divided by zero
    assert FeatureSpec.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match="features must be"):
        FeatureSpec.fit(["a"], features, hidden=(4,), top_n=7)


def test_score_shape_dtype_and_round_trip(tmp_path: Path) -> None:
    ranker = Ranker.new(spec(), "cpu", seed=3)
    x = np.random.default_rng(1).standard_normal((7, 4)).astype(np.float32)
    scores = ranker.score(x)
    assert scores.shape == (7,) and scores.dtype == np.float32
    folder = ranker.save(tmp_path / "bundle")
    assert {p.name for p in folder.iterdir()} == {"ranker.pt", "ranker.json"}
    np.testing.assert_array_equal(Ranker.load(folder, "cpu").score(x), scores)
    with pytest.raises(ValueError, match="features must be"):
        ranker.score(x[:, :3])


def test_same_seed_same_weights() -> None:
    x = np.eye(4, dtype=np.float32)
    a, b = Ranker.new(spec(), "cpu", seed=5), Ranker.new(spec(), "cpu", seed=5)
    np.testing.assert_array_equal(a.score(x), b.score(x))


def test_resolve_torch_device() -> None:
    assert resolve_torch_device("cpu").type == "cpu"
    assert resolve_torch_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device must be"):
        resolve_torch_device("tpu")


def test_candidate_union_labels_and_pairs() -> None:
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 0, 0]], dtype=np.float32))
    pop = PopularityGenerator().fit(train)
    items, tops = candidate_union([pop], np.arange(2, dtype=np.int64), 3)
    # Only items with a training interaction can be candidates; seen ones never are.
    assert items.tolist() == [[1], [-1]]
    assert tops[0].tolist() == [[1, -1, -1], [-1, -1, -1]]
    train2 = sp.csr_matrix(np.array([[1, 0, 1, 1], [1, 1, 1, 0]], dtype=np.float32))
    pop2 = PopularityGenerator().fit(train2)
    items2, _ = candidate_union([pop2], np.arange(2, dtype=np.int64), 3)
    assert items2.tolist() == [[1], [3]]
    labels = np.array([[True, False, False], [False, False, False]])
    valid = np.array([[True, True, True], [True, True, False]])
    rows, pos, neg = _pairs(labels, valid, 4, np.random.default_rng(0))
    assert rows.tolist() == [0, 0, 0, 0] and pos.tolist() == [0, 0, 0, 0]
    assert set(neg.tolist()) <= {1, 2}  # the user's own negatives, never padding


def test_candidate_labels_mark_held_out_items() -> None:
    cands = CandidateSet(
        users=np.arange(2, dtype=np.int64),
        items=np.array([[2, 3], [0, -1]], dtype=np.int32),
        features=np.zeros((2, 2, 1), dtype=np.float32),
        names=("x",),
        top_n=2,
    )
    holdout = sp.csr_matrix(np.array([[0, 0, 1, 0], [1, 0, 0, 0]], dtype=np.float32))
    assert candidate_labels(cands, holdout).tolist() == [[True, False], [True, False]]
