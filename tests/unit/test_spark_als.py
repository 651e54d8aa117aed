"""Spark MLlib ALS behaves like the implicit generator: planted blocks, seen items, shapes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import scipy.sparse as sp
from pyspark.sql import SparkSession

from offline.generators.als import AlsGenerator
from offline.generators.spark_als import SparkAlsGenerator, make_als
from offline.spark import spark_session
from shared.settings import Settings

pytestmark = pytest.mark.spark


def two_blocks(seed: int = 0) -> sp.csr_matrix:
    """Users 0-9 use only items 0-7, users 10-19 only items 8-15 (each pair with p = 0.6).

    Item 16 has no interactions: it must never be recommended.
    """
    rng = np.random.default_rng(seed)
    dense = np.zeros((20, 17), dtype=np.float32)
    dense[:10, :8] = rng.random((10, 8)) < 0.6
    dense[10:, 8:16] = rng.random((10, 8)) < 0.6
    dense[:, :16][dense[:, :16].sum(axis=1) == 0, 0] = 1.0  # nobody without interactions
    return sp.csr_matrix(dense * rng.integers(1, 4, dense.shape))


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session(Settings(spark_master="local[1]"), "recsys-test-spark-als")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def model(spark: SparkSession) -> SparkAlsGenerator:
    # Rank 2 is the planted structure's rank; more factors fit the noise inside a block
    # of ten users (as implicit's ALS does too on data this small).
    return SparkAlsGenerator(
        spark, factors=2, iterations=10, regularization=0.01, alpha=5.0, num_blocks=2
    ).fit(two_blocks())


def test_recommends_in_block_unseen_items(model: SparkAlsGenerator) -> None:
    train = model.train_matrix
    users = np.arange(train.shape[0])
    items, scores = model.recommend(users, 3)
    assert items.shape == (20, 3)
    assert items.dtype == np.int32
    assert scores.dtype == np.float32
    for u in users:
        seen = set(train[u].indices)
        assert not set(items[u]) & seen
        unseen_in_block = set(range(0, 8) if u < 10 else range(8, 16)) - seen
        # Every unseen item of the user's block ranks above any item of the other block.
        k = min(3, len(unseen_in_block))
        assert set(items[u][:k]) <= unseen_in_block, (u, items[u], unseen_in_block)
    assert 16 not in items


def test_embeddings_have_the_matrix_shape_and_score_like_recommend(
    model: SparkAlsGenerator,
) -> None:
    users, item_vectors = model.user_embeddings(), model.item_embeddings()
    assert users is not None and item_vectors is not None
    assert users.shape == (20, 2) and users.dtype == np.float32
    assert item_vectors.shape == (17, 2) and item_vectors.dtype == np.float32
    assert not item_vectors[16].any()  # absent from Spark's output: a zero vector
    np.testing.assert_allclose(model.score(np.array([3, 15])), users[[3, 15]] @ item_vectors.T)


def test_make_als_picks_the_backend(spark: SparkSession) -> None:
    implicit = make_als("implicit", None, factors=8, device="cpu")
    assert isinstance(implicit, AlsGenerator) and implicit.factors == 8
    on_spark = make_als("spark", spark, factors=8)
    assert isinstance(on_spark, SparkAlsGenerator) and on_spark.factors == 8
    with pytest.raises(ValueError, match="needs a SparkSession"):
        make_als("spark", None)
    with pytest.raises(ValueError, match=r"unknown ALS backend 'mahout'.*implicit.*spark"):
        make_als("mahout", spark)  # type: ignore[arg-type]
