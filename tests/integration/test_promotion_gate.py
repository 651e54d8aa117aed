"""The promotion gate on real offline runs (Spark, candidates in the real Cassandra): a bundle trained on
a tenth of the data is refused against one trained on all of it, a better one is promoted,
each decision is in the registry's history, and ``--force`` overrides the gate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from offline.gate import GateRefused, judge, promote_gated
from offline.job import run_offline
from offline.pipeline import FrameSource, SplitParams
from offline.spark import spark_session
from offline.spec import JobSpec, ModelParams
from shared.data.synthetic import generate
from shared.registry import ModelRegistry
from shared.settings import Settings

pytestmark = [pytest.mark.spark, pytest.mark.timeout(900)]
SMALL = ModelParams(als_factors=8, als_iterations=5, ranker_epochs=2, per_generator=20)


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session(
        Settings(spark_master="local[2]"), "recsys-gate-tests", shuffle_partitions=4
    )
    yield session
    session.stop()


@pytest.mark.cassandra
def test_worse_refused_better_promoted_forced_recorded(
    tmp_path: Path, spark: SparkSession, cassandra_keyspace_url: str
) -> None:
    """The candidate lists the gate scores are the ones the job wrote to the real Cassandra."""
    settings = Settings(
        home=tmp_path, spark_master="local[2]", candidates_url=cassandra_keyspace_url
    )
    made = generate(30_000, n_users=400, n_items=250, seed=5)
    full: pd.DataFrame = made.interactions
    tenth = full.sample(frac=0.1, random_state=1).reset_index(drop=True)
    spec = JobSpec(
        source=FrameSource(full, "full"),
        label="full",
        items=made.items,
        split=SplitParams(kind="temporal", test_fraction=0.2),
        candidates_per_user=30,
        params=SMALL,
        promote=False,
    )

    def run(frame: pd.DataFrame, label: str) -> str:
        return run_offline(
            settings, replace(spec, source=FrameSource(frame, label), label=label), spark=spark
        ).version

    registry = ModelRegistry(settings.registry_url)
    small = run(tenth, "tenth")
    first = promote_gated(settings, small, by="test")  # nothing live: it goes live
    assert first.passed and first.reason == "no bundle is live"

    better = run(full, "full")
    verdict = promote_gated(settings, better, by="test")
    assert verdict.passed and verdict.live == small
    assert verdict.new_value is not None and verdict.live_value is not None
    assert verdict.new_value > verdict.live_value, verdict
    assert registry.live().version == better  # type: ignore[union-attr]

    worse = run(full.sample(frac=0.1, random_state=2).reset_index(drop=True), "tenth-again")
    with pytest.raises(GateRefused, match=f"bundle {worse} not promoted: ndcg@10 "):
        promote_gated(settings, worse, by="test")
    assert registry.live().version == better  # type: ignore[union-attr]
    refused = judge(settings, worse)
    assert not refused.passed and refused.new_value < refused.live_value - refused.tolerance  # type: ignore[operator]

    forced = promote_gated(settings, worse, force=True, by="test")
    assert not forced.passed and registry.live().version == worse  # type: ignore[union-attr]

    history = [(d["action"], d["version"], d.get("live")) for d in registry.decisions()]
    assert history == [
        ("promote", small, None),
        ("promote", better, small),
        ("refuse", worse, better),
        ("promote-forced", worse, better),
    ]
    assert all(d["by"] == "test" and d["reason"] for d in registry.decisions())


def test_schedule_retrains_gates_promotes_and_records(tmp_path: Path) -> None:
    """``recsys offline schedule --now`` end to end: one offline run in a child process,
    the gate (nothing live: it passes), the promotion, each in the history; then
    ``--once`` finds nothing due."""
    import json
    import os
    import subprocess
    import sys

    made = generate(20_000, n_users=300, n_items=200, seed=7)
    csv = tmp_path / "log.csv"
    made.interactions.to_csv(csv, index=False)
    home = tmp_path / "var"
    env = {**os.environ, "RECSYS_HOME": str(home), "RECSYS_SPARK_MASTER": "local[2]"}
    recsys = str(Path(sys.executable).with_name("recsys"))
    run_args = [
        "--interactions",
        str(csv),
        "--split",
        "temporal",
        "--no-ranker",
        "--candidates",
        "20",
    ]
    argv = [recsys, "offline", "schedule", "--watch", "0", "--json"]
    argv += [f"--run-arg={a}" for a in run_args]
    done = subprocess.run(
        [*argv, "--now"], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["retrained"] and out["promoted"], out
    registry = ModelRegistry(f"file://{home}/models")
    assert registry.live().version == out["version"]  # type: ignore[union-attr]
    assert [d["action"] for d in registry.decisions()] == ["retrain", "promote"]
    assert registry.decisions()[0]["reason"] == "asked for (--now)"

    again = subprocess.run(
        [*argv, "--once"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout) == {"retrained": False}  # the run above was just now
    bad = subprocess.run(
        [*argv, "--once", "--every", "soon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr
