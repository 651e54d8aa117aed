"""``recsys offline tune`` and ``recsys offline run --params/--tune`` through the CLI, on
Spark: the search runs on the pipeline's training part, resumes, writes a params file that
the job uses, and the bundle records it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.data.synthetic import generate
from shared.registry import ModelRegistry

pytestmark = [pytest.mark.spark, pytest.mark.timeout(900)]
RECSYS = str(Path(sys.executable).with_name("recsys"))


def _cli(args: list[str], home: Path) -> dict[str, Any]:
    done = subprocess.run(
        [RECSYS, *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "RECSYS_HOME": str(home), "RECSYS_SPARK_MASTER": "local[2]"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tune-data") / "log.csv"
    generate(20_000, n_users=400, n_items=300, seed=3).interactions.to_csv(path, index=False)
    return path


def test_tune_resumes_and_run_tune_uses_and_records_the_params(csv: Path, tmp_path: Path) -> None:
    home = tmp_path / "var"
    first = _cli(["offline", "tune", "--interactions", str(csv), "--trials", "3"], home)
    assert first["trials"] == 3 and first["complete_trials"] >= 1
    params_file = Path(first["params_file"])
    assert params_file.is_file() and params_file.parent == home / "tune"
    assert set(first["members"]) == {"ease", "covisit", "als"}

    # `run --tune` resumes the same study (its name comes from the same training data),
    # then runs the job with the file it writes, as `run --params FILE` would.
    run = _cli(
        ["offline", "run", "--interactions", str(csv), "--tune", "--trials", "2",
         "--no-ranker", "--candidates", "20"],
        home,
    )  # fmt: skip
    bundle = ModelRegistry(f"file://{home}/models").get(run["version"])
    tuned = bundle.params["tuned"]
    assert tuned["file"] == first["params_file"] and tuned["study"] == first["study"]
    assert tuned["trials"] == 5  # resumed, not restarted
    assert tuned["validation_ndcg@10"] >= first["validation_ndcg@10"]
    stored = json.loads(params_file.read_text())["params"]
    models = bundle.params["models"]
    assert {key: models[key] for key in stored} == stored  # the job ran with the file's values
    assert run["metrics"]["ndcg@10"] > 0
