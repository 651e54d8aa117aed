"""The shared ranker: feature order, spec files, scoring, device choice; training pieces."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp  # type: ignore[import-untyped]

from offline.generators.popularity import PopularityGenerator
from offline.ranker_training import CandidateSet, _pairs, candidate_labels, candidate_union
from shared.device import resolve_device, resolve_torch_device
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


def test_score_equals_the_modules_forward_and_follows_training() -> None:
    """Serving scores without nn.Module's call machinery, on the net's own tensors: the
    same numbers as the module, before and after its weights move (and with a prior)."""
    import torch

    names = [f"f{i}" for i in range(4)]
    features = np.random.default_rng(2).standard_normal((64, 4)).astype(np.float32)
    prior = {"f0": 1.0, "f2": -0.5}
    ranker = Ranker.new(FeatureSpec.fit(names, features, (16, 8), 5, prior), "cpu", seed=4)
    with torch.no_grad():
        for p in ranker.net.parameters():  # a prior starts the last layer at zero
            p.add_(torch.randn_like(p))

    def module() -> np.ndarray:
        with torch.inference_mode():
            return np.asarray(ranker.net(torch.from_numpy(features)).numpy())

    np.testing.assert_array_equal(ranker.score(features), module())
    first = ranker.net.mlp[0]
    assert isinstance(first, torch.nn.Linear)
    with torch.no_grad():
        first.weight.mul_(2.0)  # as an optimizer step does, in place
    np.testing.assert_array_equal(ranker.score(features), module())


def test_same_seed_same_weights() -> None:
    x = np.eye(4, dtype=np.float32)
    a, b = Ranker.new(spec(), "cpu", seed=5), Ranker.new(spec(), "cpu", seed=5)
    np.testing.assert_array_equal(a.score(x), b.score(x))


def test_resolve_torch_device() -> None:
    assert resolve_torch_device("cpu").type == "cpu"
    assert resolve_torch_device("auto").type == resolve_device("auto")
    with pytest.raises(ValueError, match="device must be"):
        resolve_torch_device("tpu")


def test_device_decision_follows_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: the GPU exactly when torch sees one; cuda without one fails at start-up."""
    import torch

    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda") == "cuda"
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu")


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


def test_torch_threads_sets_and_restores() -> None:
    import torch

    from offline.generators.base import torch_threads
    from offline.ranker_training import TrainConfig

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    assert TrainConfig().threads == 1  # the tiny net trains on one thread by default


def _reference_signals(
    member: object, train: sp.csr_matrix, users: np.ndarray, items: np.ndarray, top: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The dense version (every item scored, masks built): what the fast path must equal."""
    known = np.diff(train.tocsc().indptr) > 0
    raw = np.array(member.score(users), dtype=np.float64)  # type: ignore[attr-defined]
    seen = train[users]
    usable = np.broadcast_to(known, raw.shape).copy()
    usable[np.repeat(np.arange(len(users)), np.diff(seen.indptr)), seen.indices] = False
    count = np.maximum(usable.sum(axis=1, keepdims=True), 1)
    mean = np.where(usable, raw, 0.0).sum(axis=1, keepdims=True) / count
    std = np.sqrt(np.where(usable, (raw - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / count)
    safe = np.maximum(items, 0)
    z = (np.take_along_axis(raw, safe, axis=1) - mean) / np.where(std > 0, std, 1.0)
    position = np.full(raw.shape, top.shape[1], dtype=np.int64)
    listed = top >= 0
    position[np.nonzero(listed)[0], top[listed]] = np.nonzero(listed)[1]
    return z, np.take_along_axis(position, safe, axis=1)


@pytest.mark.parametrize("kind", ["als", "ease", "covisit"])
def test_member_signals_equal_the_dense_computation(kind: str) -> None:
    from offline.generators.als import AlsGenerator
    from offline.generators.covisit import CovisitationGenerator
    from offline.generators.ease import EaseGenerator
    from offline.ranker_training import _member_signals

    rng = np.random.default_rng(3)
    dense = (rng.random((300, 80)) < 0.15).astype(np.float32)
    dense[:, 70:] = 0.0  # items nobody saw: excluded from the statistics
    dense[5] = 0.0  # a user without history
    dense[6, :70] = 1.0  # a user who saw every known item (nothing usable)
    train = sp.csr_matrix(dense)
    member = {
        "als": lambda: AlsGenerator(factors=8, iterations=3, device="cpu", num_threads=1),
        "ease": lambda: EaseGenerator(l2=5.0),
        "covisit": lambda: CovisitationGenerator(neighbours=20),
    }[kind]().fit(train)
    users = np.arange(0, 300, 2, dtype=np.int64)
    users[:3] = [5, 6, 7]
    items, tops = candidate_union([member], users, 10)
    items[:, -1] = -1  # padding
    z, rank = _member_signals(member, train, users, items, tops[0])
    want_z, want_rank = _reference_signals(member, train, users, items, tops[0])
    assert (rank == want_rank).all()
    np.testing.assert_allclose(z, want_z, rtol=1e-4, atol=1e-4)


def test_top_n_selects_like_a_full_sort() -> None:
    from offline.generators import top_n

    rng = np.random.default_rng(1)
    scores = rng.standard_normal((64, 500)).astype(np.float32)
    scores[:, ::7] = -np.inf
    scores[3] = -np.inf  # nothing to recommend: all padding
    items, values = top_n(scores, 20)
    order = np.lexsort((np.broadcast_to(np.arange(500), scores.shape), -scores), axis=1)[:, :20]
    want = order.astype(np.int32)
    want[~np.isfinite(np.take_along_axis(scores, order, axis=1))] = -1
    assert (items == want).all()
    assert (items[3] == -1).all() and np.isneginf(values[3]).all()


def test_a_frozen_net_without_hidden_layers_scores_as_torch_does_in_numpy() -> None:
    """freeze(): a net without hidden layers on the CPU scores as one affine map in numpy,
    the numbers torch gives, with trained (nonzero) weights, a prior and a spread of
    feature scales; a net with hidden layers stays on torch."""
    import torch

    names = [f"f{i}" for i in range(6)]
    rng = np.random.default_rng(3)
    raw = (rng.standard_normal((80, 6)) * [1, 10, 0.1, 3, 50, 1] + [0, 5, -2, 0, 100, 1]).astype(
        np.float32
    )
    flat = FeatureSpec.fit(names, raw, hidden=(), top_n=5)
    flat = replace(flat, prior=(0.5, -1.0, 0.0, 2.0, 0.01, 0.0))
    ranker = Ranker.new(flat, "cpu", seed=1)
    with torch.no_grad():  # as training leaves it: the last layer away from zero
        for param in ranker.net.parameters():
            param.copy_(torch.randn_like(param))
    x = rng.standard_normal((300, 6)).astype(np.float32) * 5
    by_torch = ranker.score(x)
    assert ranker.freeze() is ranker and ranker._frozen is not None
    by_numpy = ranker.score(x)
    assert by_numpy.dtype == np.float32 and by_numpy.shape == (300,)
    np.testing.assert_allclose(by_numpy, by_torch, rtol=1e-5, atol=1e-4)
    assert not np.array_equal(by_torch, np.zeros(300))


def test_a_frozen_net_with_hidden_layers_scores_as_torch_does_in_numpy() -> None:
    """freeze() on an MLP (two hidden layers, trained weights, a prior): numpy's forward
    gives torch's scores, the ReLUs included (some units below zero for these inputs)."""
    import torch

    rng = np.random.default_rng(4)
    names = [f"f{i}" for i in range(7)]
    raw = (rng.standard_normal((60, 7)) * 4 + 2).astype(np.float32)
    deep = replace(
        FeatureSpec.fit(names, raw, hidden=(16, 8), top_n=5), prior=(1.0, 0, 0, -0.5, 0, 0, 0.25)
    )
    ranker = Ranker.new(deep, "cpu", seed=2)
    with torch.no_grad():
        for param in ranker.net.parameters():
            param.copy_(torch.randn_like(param) * 0.5)
    x = (rng.standard_normal((250, 7)) * 4 + 2).astype(np.float32)
    by_torch = ranker.score(x)
    hidden = torch.relu(torch.nn.functional.linear(
        (torch.from_numpy(x) - ranker.net.mean) / ranker.net.std, *ranker._linear[0]
    ))  # fmt: skip
    assert 0 < float((hidden == 0).float().mean()) < 1  # the ReLU cuts some units, not all
    assert ranker.freeze()._frozen is not None
    np.testing.assert_allclose(ranker.score(x), by_torch, rtol=1e-5, atol=1e-4)
