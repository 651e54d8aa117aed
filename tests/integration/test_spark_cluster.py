"""The offline tier on a real Spark standalone cluster (master, worker, executor JVMs).

The cluster runs the Spark that pyspark ships (``offline.spark_cluster``). The pipeline's
outputs on it must equal a ``local[1]`` run row for row, and MLlib ALS trained there must
find planted structure: what passes here is what a ``spark://`` master gets in production.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import scipy.sparse as sp
from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from offline.generators.spark_als import SparkAlsGenerator
from offline.pipeline import FrameSource, run_pipeline
from offline.pipeline.run import PipelineResult
from offline.spark import spark_session
from offline.spark_cluster import standalone_cluster
from shared.settings import Settings

pytestmark = pytest.mark.spark

# Per-application values a restored session must not reuse.
_RUN_KEYS = ("spark.app.id", "spark.app.startTime", "spark.app.submitTime", "spark.driver.port")


@contextmanager
def fresh_session(settings: Settings, name: str) -> Iterator[SparkSession]:
    """A new session on ``settings.spark_master``, stopped after.

    ``getOrCreate`` hands back whatever session is running, whatever its master, so a
    running one (e.g. another module's fixture) is stopped first and rebuilt afterwards
    with its configuration (same JVM, new SparkContext).
    """
    previous = SparkContext._active_spark_context
    saved = (
        [(k, v) for k, v in previous.getConf().getAll() if k not in _RUN_KEYS] if previous else []
    )
    if previous is not None:
        (SparkSession.getActiveSession() or previous).stop()
    with pytest.MonkeyPatch.context() as env:
        # The driver tells executors which Python to start for pandas UDFs: this one.
        env.setenv("PYSPARK_PYTHON", sys.executable)
        session = spark_session(settings, name, shuffle_partitions=1)
        try:
            assert session.sparkContext.master == settings.spark_master
            yield session
        finally:
            session.stop()
    if saved:
        SparkSession.builder.config(conf=SparkConf().setAll(saved)).getOrCreate()


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[str]]:
    """The cluster, booting in a background thread: the local[1] run overlaps its ~20 s."""
    work_dir = tmp_path_factory.mktemp("spark-cluster")
    with ExitStack() as stack, ThreadPoolExecutor(1) as pool:
        # Leaving the block waits for the boot (pool), then stops the cluster (stack).
        yield pool.submit(stack.enter_context, standalone_cluster(work_dir=work_dir))


@pytest.fixture(scope="module")
def local_run(cluster_url: Future[str], tmp_path_factory: pytest.TempPathFactory) -> PipelineResult:
    """The reference: the pipeline on local[1] (run while the cluster boots)."""
    settings = Settings(spark_master="local[1]", home=tmp_path_factory.mktemp("local"))
    with fresh_session(settings, "recsys-test-local") as spark:
        return run_pipeline(settings, _source(), spark=spark)


@pytest.fixture(scope="module")
def cluster_spark(local_run: PipelineResult, cluster_url: Future[str]) -> Iterator[SparkSession]:
    """One session on the cluster for the module (each new one waits for a new executor).

    It depends on ``local_run`` so that the local session has come and gone first: a JVM
    holds one SparkContext at a time.
    """
    with fresh_session(Settings(spark_master=cluster_url.result()), "recsys-test-cluster") as s:
        yield s


def _source(n_users: int = 12, n_items: int = 8, seed: int = 1) -> FrameSource:
    rng = np.random.default_rng(seed)
    pairs = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.6]
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u, _ in pairs],
            "item_id": [f"i{i}" for _, i in pairs],
            "rating": rng.integers(1, 6, len(pairs)).astype(np.float32),
            "timestamp": rng.integers(1_000, 9_000, len(pairs)).astype(np.int64),
        }
    )
    return FrameSource(frame, "cluster-check")


def _table(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def _two_blocks() -> sp.csr_matrix:
    """Users 0-9 use only items 0-7, users 10-19 only items 8-15."""
    rng = np.random.default_rng(3)
    dense = np.zeros((20, 16), dtype=np.float32)
    dense[:10, :8] = rng.random((10, 8)) < 0.6
    dense[10:, 8:] = rng.random((10, 8)) < 0.6
    dense[dense.sum(axis=1) == 0, 0] = 1.0
    return sp.csr_matrix(dense)


def test_pipeline_on_the_cluster_equals_local(
    cluster_spark: SparkSession, local_run: PipelineResult, tmp_path: Path
) -> None:
    settings = Settings(spark_master=cluster_spark.sparkContext.master, home=tmp_path)
    remote = run_pipeline(settings, _source(), spark=cluster_spark)
    assert not any(remote.cached.values())  # computed on the cluster, not read back
    assert remote.rows == local_run.rows
    assert local_run.rows["split"]["test"] > 0
    for table in ("train", "test"):
        pdt.assert_frame_equal(
            _table(remote.path("split", table)), _table(local_run.path("split", table))
        )


def test_spark_als_learns_planted_blocks_on_the_cluster(cluster_spark: SparkSession) -> None:
    train = _two_blocks()
    model = SparkAlsGenerator(
        cluster_spark, factors=2, iterations=10, regularization=0.01, alpha=5.0, num_blocks=2
    ).fit(train)
    items, _ = model.recommend(np.arange(20), 2)
    for u in range(20):
        seen = set(train[u].indices)
        unseen_in_block = set(range(0, 8) if u < 10 else range(8, 16)) - seen
        assert not set(items[u]) & seen
        assert set(items[u][: min(2, len(unseen_in_block))]) <= unseen_in_block
    embeddings = model.item_embeddings()
    assert embeddings is not None and embeddings.shape == (16, 2)
