"""No training/serving skew: a bundle and candidates built by the real offline job (Spark),
then served: the online ranker inputs of a precomputed candidate are the feature rows the
offline job ranked, and re-scoring them gives the offline scores; the fallback features of
any other item agree with the offline ones on every signal the online tier has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession

from offline.job import run_offline
from offline.pipeline import FrameSource
from offline.spark import spark_session
from offline.spec import JobResult, JobSpec, ModelParams
from online import arrays, blend
from online.arrays import Fresh, PackedCandidates, Pool
from online.bundle import ServingBundle, load_serving_bundle
from online.recommend import pool_features
from shared.bundle import user_embeddings
from shared.data.synthetic import generate
from shared.online_features import unproposed_features
from shared.ranker import ITEM_FEATURES, extra_names
from shared.settings import Settings
from shared.storage.candidates import Candidates
from shared.storage.factory import open_candidates

pytestmark = [pytest.mark.spark, pytest.mark.timeout(900)]
SMALL = ModelParams(als_factors=8, als_iterations=5, ranker_epochs=2, per_generator=20)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, JobResult]]:
    home: Path = tmp_path_factory.mktemp("online-skew")
    settings = Settings(home=home, spark_master="local[2]")
    spark: SparkSession = spark_session(settings, "recsys-online-skew", shuffle_partitions=4)
    made = generate(8_000, n_users=200, n_items=150, seed=11)
    spec = JobSpec(
        source=FrameSource(made.interactions, "synthetic-8k"),
        label="synthetic-8k",
        items=made.items,
        candidates_per_user=30,
        params=SMALL,
    )
    try:
        yield settings, run_offline(settings, spec, spark=spark)
    finally:
        spark.stop()


@pytest.fixture(scope="module")
def served(job: tuple[Settings, JobResult]) -> tuple[ServingBundle, list[Candidates]]:
    settings, result = job
    bundle = load_serving_bundle(result.version, result.bundle, device="cpu")
    store = open_candidates(settings.candidates_url)
    try:
        users = user_embeddings(result.bundle).ids
        rows = [c for u in users if (c := store.get(u, result.version)) is not None]
    finally:
        store.close()
    assert len(rows) > 100, "the offline job wrote no candidates"
    with_features = [c for c in rows if c.features is not None]
    assert len(with_features) > 100, "the offline job stored no candidate features"
    return bundle, with_features


def _pool(
    bundle: ServingBundle, packed: PackedCandidates, quotas: blend.Quotas, popular: list[str]
) -> Pool:
    catalogue = bundle.catalogue
    return arrays.merge(
        packed=packed,
        fresh=Fresh.empty(),
        trending=catalogue.trending[:0],
        popular=catalogue.indices(popular),
        drop=np.zeros(catalogue.size + len(packed.extras), dtype=bool),
        quotas=quotas,
    )


def test_precomputed_candidates_rank_on_the_offline_features(
    served: tuple[ServingBundle, list[Candidates]],
) -> None:
    bundle, rows = served
    assert bundle.ranker is not None
    for cands in rows[:50]:
        packed = PackedCandidates.pack(bundle.version, cands, bundle.catalogue)
        pool = _pool(bundle, packed, blend.Quotas(precomputed=len(cands.items)), popular=[])
        online = pool_features(bundle, pool, packed, recent=["whatever"])
        assert cands.features is not None
        np.testing.assert_array_equal(online, cands.features)
        rescored = bundle.ranker.score(online)
        np.testing.assert_allclose(rescored, cands.scores, rtol=1e-5, atol=1e-5)


def test_fallback_features_share_the_offline_signals(
    served: tuple[ServingBundle, list[Candidates]],
) -> None:
    bundle, rows = served
    assert bundle.ranker is not None
    spec = bundle.ranker.spec
    names = list(spec.names)
    assert set(ITEM_FEATURES) <= set(extra_names(spec.names))  # a ranker of today's layout
    pop, hist = names.index("item_log_pop"), names.index("user_log_history")
    for cands in rows[:50]:
        assert cands.features is not None
        packed = PackedCandidates.pack(bundle.version, cands, bundle.catalogue)
        other = next(i for i in bundle.popular if i not in set(cands.items))
        pool = _pool(bundle, packed, blend.Quotas(precomputed=len(cands.items)), popular=[other])
        history = round(float(np.expm1(np.float64(cands.features[0, hist]))))
        at = bundle.catalogue.indices(cands.items)
        popularity = bundle.catalogue.popularity[at]
        columns = {name: values[at] for name, values in bundle.item_columns.items()}
        fallback = unproposed_features(spec, popularity, history, columns)
        # item popularity from the catalogue == the popularity the offline job used
        np.testing.assert_allclose(fallback[:, pop], cands.features[:, pop], rtol=1e-6)
        np.testing.assert_allclose(fallback[:, hist], cands.features[:, hist], rtol=1e-6)
        # so are the per-item extra features; the per-user-and-item ones read 0 there
        for name in ITEM_FEATURES:
            j = names.index(name)
            np.testing.assert_array_equal(fallback[:, j], cands.features[:, j])
        for name in set(extra_names(spec.names)) - set(ITEM_FEATURES):
            assert not fallback[:, names.index(name)].any()
        # a fresh item for this user gets the same history as its precomputed ones
        mixed = pool_features(bundle, pool, packed, recent=[])
        assert mixed[-1, hist] == pytest.approx(cands.features[0, hist])
