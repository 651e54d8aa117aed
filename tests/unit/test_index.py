"""FAISS item index: exact and HNSW search, recall against exact, save/load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from shared.index import build_index, exact_search, measure_recall


def random_vectors(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_auto_picks_exact_below_the_threshold_and_hnsw_above() -> None:
    vectors = random_vectors(200)
    assert build_index(vectors).kind == "flat"
    chosen = build_index(vectors, hnsw_threshold=100)
    assert chosen.kind == "hnsw"
    assert chosen.params["requested"] == "auto"
    assert chosen.params["m"] == 32


def test_exact_index_has_recall_one_and_true_scores() -> None:
    items, queries = random_vectors(1000), random_vectors(50, seed=1)
    index = build_index(items, "flat")
    assert measure_recall(index, items, queries, 10)["recall@10"] == 1.0
    ids, scores = index.search(queries, 10)
    np.testing.assert_allclose(
        scores, np.take_along_axis(queries @ items.T, ids, axis=1), rtol=1e-5
    )
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_hnsw_recall_against_exact_search() -> None:
    items, queries = random_vectors(3000), random_vectors(200, seed=1)
    index = build_index(items, "hnsw")
    recall = measure_recall(index, items, queries, 10)
    assert recall["recall@10"] >= 0.9, recall
    assert recall["items"] == 3000


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip_gives_identical_results(
    kind: Literal["flat", "hnsw"], tmp_path: Path
) -> None:
    items, queries = random_vectors(2000), random_vectors(20, seed=2)
    index = build_index(items, kind)
    before = index.search(queries, 10)
    loaded = type(index).load(index.save(tmp_path / "index"))
    after = loaded.search(queries, 10)
    assert loaded.kind == kind and loaded.params == index.params
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_fewer_items_than_k_pad_with_minus_one() -> None:
    ids, _ = build_index(random_vectors(3)).search(random_vectors(2, seed=1), 5)
    assert (ids[:, 3:] == -1).all()
    assert exact_search(random_vectors(3), random_vectors(1), 2).shape == (1, 2)


def test_rejects_non_matrix_input() -> None:
    with pytest.raises(ValueError, match="2-d"):
        build_index(np.zeros(4, dtype=np.float32))
