"""The offline job end to end on Spark: bundle, candidates, report, re-evaluation, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from offline.evaluate_bundle import evaluate_bundle
from offline.job import run_offline
from offline.pipeline import FrameSource, SplitParams
from offline.spark import spark_session
from offline.spec import JobResult, JobSpec, ModelParams
from shared import bundle as layout
from shared import drift
from shared.data.synthetic import generate
from shared.errors import DataError
from shared.index import ItemIndex
from shared.ranker import Ranker
from shared.registry import ModelRegistry, verify_bundle
from shared.settings import Settings
from shared.storage.factory import open_candidates

pytestmark = [pytest.mark.spark, pytest.mark.timeout(900)]
RECSYS = str(Path(sys.executable).with_name("recsys"))
SMALL = ModelParams(als_factors=8, als_iterations=5, ranker_epochs=2, per_generator=20)


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session(
        Settings(spark_master="local[2]"), "recsys-job-tests", shuffle_partitions=4
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    made = generate(20_000, n_users=400, n_items=300, seed=3)
    return made.interactions, made.items


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("offline-job")


@pytest.fixture(scope="module")
def settings(home: Path) -> Settings:
    return Settings(home=home, spark_master="local[2]")


@pytest.fixture(scope="module")
def first(
    settings: Settings, spark: SparkSession, data: tuple[pd.DataFrame, pd.DataFrame], home: Path
) -> tuple[JobResult, JobSpec]:
    interactions, items = data
    spec = JobSpec(
        source=FrameSource(interactions, "synthetic-20k"),
        label="synthetic-20k",
        items=items,
        candidates_per_user=30,
        params=SMALL,
        recommendations_out=home / "recs.csv",
    )
    steps: list[str] = []
    result = run_offline(settings, spec, lambda step, _s, _d: steps.append(step), spark=spark)
    assert steps == [
        "pipeline",
        "ranker",
        "generators",
        "candidates",
        "evaluate",
        "index",
        "bundle",
        "promote",
    ]
    return result, spec


def test_bundle_holds_every_artefact_and_is_live(
    first: tuple[JobResult, JobSpec], settings: Settings
) -> None:
    result, _ = first
    registry = ModelRegistry(settings.registry_url)
    live = registry.live()
    assert live is not None and live.version == result.version and result.promoted
    assert live.parent is None and live.data_fingerprint
    assert {"ndcg@10", "map@10", "precision@10", "recall@10"} <= set(live.metrics)
    folder = result.bundle
    items = layout.item_embeddings(folder)
    users = layout.user_embeddings(folder)
    assert items.dim == users.dim == SMALL.als_factors
    catalogue = pd.read_parquet(folder / layout.CATALOGUE)
    assert catalogue["item_id"].tolist() == items.ids
    assert catalogue["genres"].map(len).gt(0).all()  # synthetic items all have a genre
    assert (catalogue["popularity_rank"] >= 1).all()
    index = ItemIndex.load(folder / layout.INDEX_DIR)
    assert index.size == len(items.ids) and index.kind == "flat"
    ranker = Ranker.load(folder / layout.RANKER_DIR, device="cpu")
    assert ranker.spec.top_n == SMALL.per_generator
    report = json.loads((folder / layout.REPORT_JSON).read_text())
    assert report["index"]["recall"] == pytest.approx(1.0)  # flat index: exact
    assert "## Final lists" in (folder / layout.REPORT_MD).read_text()
    # What it serves was chosen on validation users, recorded in the ranker's spec, the
    # report (with every contender's figures and the margins) and the manifest.
    chosen = report["ranker"]
    served = chosen["served"]
    assert ranker.spec.serves == served == live.params["serves"]
    assert set(chosen["compared"]) >= {"ranker", "blend", "ease", "als", "covisit"}
    # the blend unless another list beats it clearly (paired interval above zero)
    assert chosen["default"] == "blend"
    assert set(chosen["versus_default"]) == set(chosen["compared"]) - {"blend"}
    clear = [n for n, v in chosen["versus_default"].items() if v["low"] > 0]
    assert served == max(clear, key=lambda n: chosen["compared"][n]["ndcg@10"], default="blend")
    assert f"Served: **{served}**" in (folder / layout.REPORT_MD).read_text()
    # the per-item ranker features are in the catalogue, for items the job did not rank
    assert {"item_log_age", "item_trend"} <= set(catalogue.columns)


def test_bundle_stores_a_drift_profile_of_its_training_data(
    first: tuple[JobResult, JobSpec], settings: Settings
) -> None:
    result, _ = first
    folder = result.bundle
    info = verify_bundle(folder)  # the manifest covers the profile like every other file
    assert {layout.DRIFT_PROFILE, layout.DRIFT_ITEM_BUCKETS} <= set(info.digests)
    items = layout.item_embeddings(folder)
    reference = drift.read_reference(folder, result.version, items.ids)
    assert reference is not None
    profile = reference.profile
    # Fewer training rows than a window: all of them (at least the distinct pairs).
    assert result.report["data"]["train_rows"] <= profile.window < drift.DEFAULT_WINDOW
    assert sum(profile.popularity) == profile.window
    # Deciles of popularity: the top tenth of the items holds the most events.
    assert profile.popularity[0] == max(profile.popularity)
    assert set(reference.item_buckets.values()) == set(range(drift.POPULARITY_BUCKETS))
    assert profile.event_types is None  # a frame source carries no event types
    # The split's test part: a few of its items may be new, never most.
    seen, unseen = profile.unseen_items
    assert seen > 0 and unseen < seen
    # Served scores of the validation users, binned by their own deciles: about a tenth each.
    assert profile.score_edges is not None and profile.scores is not None
    assert len(profile.scores) == len(profile.score_edges) + 1 == drift.SCORE_BINS
    shares = np.asarray(profile.scores) / sum(profile.scores)
    assert shares.min() > 0.05 and shares.max() < 0.2


def test_report_gives_intervals_and_the_difference_to_the_best_generator_alone(
    first: tuple[JobResult, JobSpec],
) -> None:
    result, _ = first
    report = json.loads((result.bundle / layout.REPORT_JSON).read_text())
    baselines = report["baselines"]
    assert set(report["intervals"]) == {"final", *baselines}
    for name, values in [("final", report["metrics"]), *baselines.items()]:
        for key, (low, high) in report["intervals"][name].items():
            assert low <= values[key] <= high, (name, key)
    singles = [name for name in report["generators"] if name in baselines]
    assert singles and "blend" not in singles and "popularity" not in singles
    versus = report["versus_best_single"]
    best = max(singles, key=lambda name: baselines[name]["ndcg@10"])
    assert versus["generator"] == best and versus["by"] == "ndcg@10"
    ndcg = versus["ndcg@10"]
    assert ndcg["difference"] == pytest.approx(
        report["metrics"]["ndcg@10"] - baselines[best]["ndcg@10"]
    )
    assert ndcg["interval"][0] <= ndcg["difference"] <= ndcg["interval"][1]
    markdown = (result.bundle / layout.REPORT_MD).read_text()
    assert f"Final lists minus the best single generator ({best}, by ndcg@10)" in markdown


def _split_part(settings: Settings, result: JobResult, part: str) -> pd.DataFrame:
    keys = json.loads((result.bundle / "manifest.json").read_text())["params"]["pipeline_keys"]
    return pd.read_parquet(settings.home / "offline" / "pipeline" / "split" / keys["split"] / part)


def test_candidates_are_live_capped_and_unseen(
    first: tuple[JobResult, JobSpec], settings: Settings
) -> None:
    result, spec = first
    train = _split_part(settings, result, "train")
    seen = train.groupby("user_id")["item_id"].agg(set)
    ranker = Ranker.load(result.bundle / layout.RANKER_DIR, device="cpu")
    store = open_candidates(settings.candidates_url)
    try:
        assert store.live_version() == result.version
        for user in seen.index[:50]:
            got = store.get(str(user))
            assert got is not None
            assert 0 < len(got.items) <= spec.candidates_per_user
            assert len(set(got.items)) == len(got.items)
            assert got.scores == sorted(got.scores, reverse=True)
            assert len(got.sources) == len(got.items) and all(got.sources)
            assert not set(got.items) & seen[user]  # never what the user had in training
            # The stored features are the ranker's input: re-scoring them gives the scores.
            assert got.features is not None
            assert got.features.shape == (len(got.items), len(ranker.spec.names))
            np.testing.assert_allclose(ranker.score(got.features), got.scores, rtol=1e-5, atol=1e-5)
    finally:
        store.close()


def test_metrics_beat_popularity_and_reevaluate_identically(
    first: tuple[JobResult, JobSpec], settings: Settings
) -> None:
    result, _ = first
    metrics = result.metrics
    popularity = result.report["baselines"]["popularity"]
    assert metrics["ndcg@10"] > popularity["ndcg@10"]
    assert set(result.report["slices"]) >= {"cold", "warm", "heavy"}
    again = evaluate_bundle(settings, result.version)
    for key in ("ndcg@10", "map@10", "precision@10", "recall@10", "coverage@10"):
        assert again["metrics"][key] == pytest.approx(metrics[key], abs=1e-9), key


def test_recommendations_file_reproduces_precision(
    first: tuple[JobResult, JobSpec], home: Path, settings: Settings
) -> None:
    """Anyone can check the metrics from the file: precision@10 recomputed by hand."""
    result, _ = first
    recs = pd.read_csv(home / "recs.csv", dtype={"user_id": str, "item_id": str})
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert recs.groupby("user_id")["rank"].max().max() <= 10
    train = _split_part(settings, result, "train")
    test = _split_part(settings, result, "test")
    relevant = test.merge(train[["user_id", "item_id"]], how="left", indicator=True)
    relevant = relevant[relevant["_merge"] == "left_only"]
    hits = recs.merge(relevant[["user_id", "item_id"]].drop_duplicates(), on=["user_id", "item_id"])
    per_user = hits.groupby("user_id").size().reindex(relevant["user_id"].unique(), fill_value=0)
    assert per_user.div(10).mean() == pytest.approx(result.metrics["precision@10"], abs=1e-9)


def _snapshot(settings: Settings) -> tuple[Any, ...]:
    registry = ModelRegistry(settings.registry_url)
    store = open_candidates(settings.candidates_url)
    try:
        return (
            registry.live(),
            [b.version for b in registry.list()],
            store.live_version(),
            [v.version for v in store.versions()],
        )
    finally:
        store.close()


def test_failed_runs_leave_live_untouched(
    first: tuple[JobResult, JobSpec],
    settings: Settings,
    spark: SparkSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, spec = first
    before = _snapshot(settings)
    empty = pd.DataFrame({"user_id": [], "item_id": [], "rating": [], "timestamp": []})
    with pytest.raises(DataError, match="no interactions"):
        run_offline(settings, replace(spec, source=FrameSource(empty, "empty")), spark=spark)
    assert _snapshot(settings) == before

    # A failure while the bundle is being written, after candidates started to be written.
    import offline.publish

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full (injected)")

    monkeypatch.setattr(offline.publish, "_write_bundle", broken)
    with pytest.raises(OSError, match="injected"):
        run_offline(settings, replace(spec, recommendations_out=None), spark=spark)
    assert _snapshot(settings) == before
    staging = Path(ModelRegistry(settings.registry_url).root) / "staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_second_run_records_its_parent_and_split_none_trains_on_all(
    first: tuple[JobResult, JobSpec], settings: Settings, spark: SparkSession
) -> None:
    result, spec = first
    again = run_offline(
        settings,
        replace(spec, split=SplitParams(kind="none"), recommendations_out=None, promote=False),
        spark=spark,
    )
    info = ModelRegistry(settings.registry_url).get(again.version)
    assert info.parent == result.version
    assert again.metrics == {} and not again.promoted
    assert ModelRegistry(settings.registry_url).live().version == result.version  # type: ignore[union-attr]


def _cli(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RECSYS, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "RECSYS_HOME": str(home), "RECSYS_SPARK_MASTER": "local[2]", **env},
        check=False,
    )


def test_cli_runs_a_csv_with_a_column_mapping_and_a_temporal_split(
    tmp_path: Path, data: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    interactions, _ = data
    csv = tmp_path / "log.csv"
    interactions.rename(columns={"user_id": "who", "item_id": "what", "timestamp": "when"}).to_csv(
        csv, index=False
    )
    done = _cli(
        [
            "offline", "run", "--interactions", str(csv), "--columns",
            "user=who,item=what,rating=rating,timestamp=when", "--split", "temporal",
            "--no-ranker", "--candidates", "20", "--json",
        ],
        tmp_path / "var",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["promoted"] is True
    assert {"ndcg@10", "map@10", "precision@10", "recall@10"} <= set(out["metrics"])
    assert "candidates" in done.stderr  # one progress line per step


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--columns", "user=nope,item=what"], "nope"),
        (["--split", "sideways"], "sideways"),
    ],
)
def test_cli_bad_input_is_one_line_and_a_nonzero_exit(
    tmp_path: Path, data: tuple[pd.DataFrame, pd.DataFrame], args: list[str], message: str
) -> None:
    interactions, _ = data
    csv = tmp_path / "log.csv"
    interactions.rename(columns={"user_id": "who", "item_id": "what"}).head(100).to_csv(
        csv, index=False
    )
    done = _cli(["offline", "run", "--interactions", str(csv), *args], tmp_path / "var")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "var" / "models").exists()  # nothing was published
    assert np.all([len(line) < 400 for line in done.stderr.strip().splitlines()])


def test_spark_mllib_als_backend_runs_the_same_job(
    first: tuple[JobResult, JobSpec], spark: SparkSession, tmp_path: Path
) -> None:
    """``RECSYS_ALS_BACKEND=spark``: ALS trains on Spark; the bundle looks the same."""
    _, spec = first
    on_spark = Settings(home=tmp_path, spark_master="local[2]", als_backend="spark")
    result = run_offline(
        on_spark, replace(spec, train_ranker=False, recommendations_out=None), spark=spark
    )
    assert result.report["generators"]["spark_als"] == "fitted"
    vectors = layout.item_embeddings(result.bundle)
    assert vectors.dim == SMALL.als_factors and np.abs(vectors.vectors).sum() > 0
    assert result.metrics["ndcg@10"] > 0
