"""Generator behaviour on tiny matrices: seen items, popularity order, planted structure."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp  # type: ignore[import-untyped]

from offline.generators import IdIndex, top_n
from offline.generators.als import AlsGenerator
from offline.generators.base import ScoringGenerator
from offline.generators.blend import BlendGenerator
from offline.generators.covisit import CovisitationGenerator
from offline.generators.ease import EaseGenerator
from offline.generators.popularity import PopularityGenerator
from offline.metrics import ranking_metrics
from shared import device as devices


def planted(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """60 users in 3 taste groups of 15 items each, plus 5 items everyone half-likes.

    Popular items (~30 users each) outnumber any group item (~14 users), so popularity
    ranks them first; a model that finds the groups ranks the user's group items first.
    Returns (train, test) with a random quarter of each user's items held out.
    """
    rng = np.random.default_rng(seed)
    n_users, group_size, n_groups, n_popular = 60, 15, 3, 5
    n_items = group_size * n_groups + n_popular
    dense = np.zeros((n_users, n_items), dtype=np.float32)
    for u in range(n_users):
        g = u % n_groups
        dense[u, g * group_size : (g + 1) * group_size] = rng.random(group_size) < 0.7
        dense[u, n_groups * group_size :] = rng.random(n_popular) < 0.5
    held = (rng.random(dense.shape) < 0.25) & (dense > 0)
    return sp.csr_matrix(dense * ~held), sp.csr_matrix(dense * held)


ALL_GENERATORS = [
    PopularityGenerator,
    lambda: EaseGenerator(l2=10.0),
    lambda: AlsGenerator(factors=8, iterations=10, regularization=0.1, device="cpu"),
    lambda: CovisitationGenerator(neighbours=20),
]


@pytest.mark.parametrize("make", ALL_GENERATORS)
def test_seen_items_never_returned(make: Callable[[], ScoringGenerator]) -> None:
    train, _ = planted()
    model = make().fit(train)
    users = np.arange(train.shape[0])
    items, scores = model.recommend(users, 10, exclude_seen=True)
    assert items.shape == (60, 10)
    assert items.dtype == np.int32
    assert scores.dtype == np.float32
    for u in users:
        assert not set(items[u]) & set(train[u].indices)
    assert (np.diff(scores, axis=1) <= 0).all()  # best first


def test_popularity_returns_most_popular_first() -> None:
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0]], dtype=np.float32))
    model = PopularityGenerator().fit(train)
    items, scores = model.recommend([0], 4, exclude_seen=False)
    # item 3 was never seen: never returned, its slot is empty
    assert items[0].tolist() == [0, 1, 2, -1]
    assert scores[0].tolist()[:3] == [3.0, 2.0, 1.0]
    assert model.recommend([0], 2, exclude_seen=True)[0][0].tolist() == [2, -1]


@pytest.mark.parametrize(
    "make",
    [
        lambda: EaseGenerator(l2=10.0),
        lambda: AlsGenerator(factors=8, iterations=10, regularization=0.1, device="cpu"),
        lambda: CovisitationGenerator(neighbours=20),
    ],
)
def test_models_beat_popularity_on_planted_groups(make: Callable[[], ScoringGenerator]) -> None:
    train, test = planted()
    users = np.arange(train.shape[0])
    base = ranking_metrics(PopularityGenerator().fit(train).recommend(users, 5)[0], test, 5)
    ours = ranking_metrics(make().fit(train).recommend(users, 5)[0], test, 5)
    assert ours.ndcg > base.ndcg + 0.05


def test_als_embeddings_score_like_recommend() -> None:
    train, _ = planted()
    model = AlsGenerator(factors=8, iterations=5, device="cpu").fit(train)
    users, items = model.user_embeddings(), model.item_embeddings()
    assert users is not None and items is not None
    assert users.shape == (60, 8) and items.shape == (50, 8)
    top, scores = model.recommend([3], 1, exclude_seen=False)
    assert scores[0, 0] == pytest.approx(float(users[3] @ items[top[0, 0]]), rel=1e-4)


def test_blend_of_one_member_ranks_like_the_member() -> None:
    train, _ = planted()
    ease = EaseGenerator(l2=10.0).fit(train)
    blend = BlendGenerator([ease], [1.0]).use_fitted(train)
    for fusion in ("zscore", "rrf"):
        blend.fusion = fusion
        assert (blend.recommend(np.arange(60), 5)[0] == ease.recommend(np.arange(60), 5)[0]).all()


def test_top_n_ties_and_padding() -> None:
    scores = np.array([[1.0, 3.0, 3.0, -np.inf]], dtype=np.float32)
    items, top = top_n(scores, 5)
    assert items[0].tolist() == [1, 2, 0, -1, -1]
    assert top[0, :3].tolist() == [3.0, 3.0, 1.0]


def test_ease_refuses_huge_catalogues() -> None:
    with pytest.raises(ValueError, match="max_items"):
        EaseGenerator(max_items=3).fit(sp.csr_matrix(np.eye(4, dtype=np.float32)))


def test_als_follows_the_device_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    import implicit.gpu

    assert devices.implicit_device("cpu") == "cpu"
    assert AlsGenerator(device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="device"):
        AlsGenerator(device="tpu")
    monkeypatch.setattr(devices, "resolve_device", lambda device="auto": "cuda")
    monkeypatch.setattr(implicit.gpu, "HAS_CUDA", True)
    assert devices.implicit_device("auto") == "cuda"


def test_als_falls_back_to_cpu_without_implicit_cuda(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The decision is the GPU (torch sees one) but implicit was built without CUDA: ALS
    still trains, on the CPU, and says why."""
    import implicit.gpu

    monkeypatch.setattr(devices, "resolve_device", lambda device="auto": "cuda")
    monkeypatch.setattr(implicit.gpu, "HAS_CUDA", False)
    with caplog.at_level("WARNING", logger="shared.device"):
        als = AlsGenerator(factors=4, iterations=2, device="auto")
    assert als.device == "cpu"
    assert "implicit was built without CUDA" in caplog.text
    train, _ = planted()
    als.fit(train)
    assert als.score(np.arange(3)).shape == (3, train.shape[1])


def test_id_index_builds_binary_matrix() -> None:
    df = pd.DataFrame(
        {"user_id": ["a", "b", "a"], "item_id": ["x", "x", "x"], "r": [2.0, 1.0, 3.0]}
    )
    index = IdIndex.from_frames(df)
    assert index.matrix(df).toarray().tolist() == [[1.0], [1.0]]
    assert index.matrix(df, weight="r").toarray().tolist() == [[5.0], [1.0]]
    with pytest.raises(KeyError, match="zz"):
        index.user_codes(pd.Series(["zz"]))


def test_id_index_factorize_equals_from_frames_and_matrix() -> None:
    from offline.split import validation_mask, validation_split

    rng = np.random.default_rng(2)
    df = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 40, 500)],
            "item_id": [f"i{i}" for i in rng.integers(0, 30, 500)],
        }
    )
    index, users, items = IdIndex.factorize(df)
    plain = IdIndex.from_frames(df)
    assert index.users.equals(plain.users) and index.items.equals(plain.items)
    assert (index.matrix_of_codes(users, items) != plain.matrix(df)).nnz == 0
    in_fit = validation_mask(users)
    fit, valid = validation_split(df)
    assert (index.matrix_of_codes(users[in_fit], items[in_fit]) != plain.matrix(fit)).nnz == 0
    assert (index.matrix_of_codes(users[~in_fit], items[~in_fit]) != plain.matrix(valid)).nnz == 0
