"""Implicit-feedback ALS on Spark MLlib, for interaction matrices that outgrow one machine.

It trains where the data is (``settings.spark_master``: ``local[*]`` or a cluster) and
then behaves exactly like :class:`~offline.generators.als.AlsGenerator`: the factors are
collected to the driver and scoring is ``U[users] @ V.T`` in numpy. Pick the backend with
:func:`make_als` (``settings.als_backend``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from offline.generators.als import AlsGenerator
from offline.generators.base import FactorGenerator, ScoringGenerator

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

Backend = Literal["implicit", "spark"]
_SCHEMA = "user int, item int, weight float"


class SparkAlsGenerator(FactorGenerator):
    """Hu, Koren & Volinsky ALS on Spark (``ALS(implicitPrefs=True)``); confidence =
    1 + alpha * weight.

    The matrix reaches Spark as a pandas frame of its non-zeros (user index, item index,
    weight) through ``spark.createDataFrame``, which moves it with Arrow when the session
    has ``spark.sql.execution.arrow.pyspark.enabled`` (as
    :func:`offline.spark.spark_session` sets): 12 bytes a row, fine for tens of millions
    of rows; beyond that, train from Parquet on the cluster instead of a driver matrix.

    Spark scales ``regularization`` by each user's and item's interaction count (ALS-WR)
    where implicit does not, so the same value regularises more here; tune per backend.
    Users or items absent from Spark's output (no interactions) get zero vectors.
    """

    name = "spark_als"

    def __init__(
        self,
        spark: SparkSession,
        *,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 1.0,
        iterations: int = 15,
        binary: bool = True,
        seed: int = 42,
        num_blocks: int | None = None,
    ) -> None:
        self.spark = spark
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.binary = binary
        self.seed = seed
        # Spark's default of 10 user and 10 item blocks; fewer suits small data on few cores.
        self.num_blocks = num_blocks
        self._users = None
        self._items = None

    def fit(self, interactions: sp.csr_matrix) -> Self:
        from pyspark.ml.recommendation import ALS

        train = self._remember(interactions)
        ratings = self._to_frame(train)
        als: Any = ALS(
            rank=self.factors,
            maxIter=self.iterations,
            regParam=self.regularization,
            alpha=self.alpha,
            implicitPrefs=True,
            seed=self.seed,
            userCol="user",
            itemCol="item",
            ratingCol="weight",
        )
        if self.num_blocks is not None:
            als.setNumUserBlocks(self.num_blocks).setNumItemBlocks(self.num_blocks)
        model = als.fit(ratings)
        n_users, n_items = train.shape
        self._users = _dense_factors(model.userFactors, n_users, self.factors)
        self._items = _dense_factors(model.itemFactors, n_items, self.factors)
        return self

    def _to_frame(self, train: sp.csr_matrix) -> DataFrame:
        coo = train.tocoo()
        weights = np.ones_like(coo.data) if self.binary else coo.data
        frame = pd.DataFrame(
            {
                "user": coo.row.astype(np.int32),
                "item": coo.col.astype(np.int32),
                "weight": weights.astype(np.float32),
            }
        )
        return self.spark.createDataFrame(frame, schema=_SCHEMA)


def _dense_factors(factors: DataFrame, rows: int, rank: int) -> npt.NDArray[np.float32]:
    """Spark's ``(id, features)`` rows as a ``[rows, rank]`` array; missing ids stay zero."""
    out = np.zeros((rows, rank), dtype=np.float32)
    frame = factors.toPandas()
    if len(frame):
        ids = frame["id"].to_numpy(dtype=np.int64)
        out[ids] = np.stack([np.asarray(v, dtype=np.float32) for v in frame["features"]])
    return out


def make_als(backend: Backend, spark: SparkSession | None, **params: Any) -> ScoringGenerator:
    """The ALS generator of ``backend`` (``settings.als_backend``) with ``params``.

    ``spark`` is required for the ``spark`` backend and ignored by ``implicit``.
    """
    if backend == "implicit":
        return AlsGenerator(**params)
    if backend == "spark":
        if spark is None:
            raise ValueError("ALS backend 'spark' needs a SparkSession (offline.spark)")
        return SparkAlsGenerator(spark, **params)
    raise ValueError(f"unknown ALS backend {backend!r}: expected 'implicit' or 'spark'")
