"""`recsys bench offline --quick`: one small run end to end, figures and report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.bench import offline
from recsys.cli import app

JOB_STEPS = ("pipeline", "ranker", "generators", "candidates", "evaluate", "index", "bundle")


@pytest.mark.spark
@pytest.mark.timeout(900)  # a fixed ~1 min of Spark start-up, slower on a loaded machine
def test_quick_run_writes_every_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))

    result = CliRunner().invoke(
        app, ["bench", "offline", "--quick", "--json", "--data-dir", str(tmp_path / "data")]
    )

    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    (size,) = figures["sizes"]
    assert size["ok"]
    assert size["interactions"] == offline.QUICK_SIZE
    assert size["generated"]
    for step in (*JOB_STEPS, "promote"):
        assert size["steps"][step]["seconds"] >= 0
        assert size["steps"][step]["peak_rss_mb"] > 0
    # Steps are timed to 0.1 s (the CLI's progress lines): fast ones may read 0.0.
    assert size["steps"]["pipeline"]["seconds"] > 0
    assert size["total_seconds"] > 0
    assert size["peak_rss_mb"] >= max(v["peak_rss_mb"] for v in size["steps"].values())
    assert set(size["pipeline_steps"]) == {"ingest", "clean", "split", "features"}
    assert "ndcg@10" in size["metrics"]
    folder = Path(figures["results_dir"])
    assert folder.parent == tmp_path / "home" / "bench"
    saved = json.loads((folder / "results.json").read_text())
    assert saved["sizes"][0]["steps"].keys() == size["steps"].keys()
    assert "| pipeline |" in (folder / "results.md").read_text()
    assert (folder / "results.csv").read_text().startswith("interactions,step,seconds")
    assert not (folder / "runs").exists()  # run homes go unless --keep
    progress = [json.loads(line) for line in (folder / "progress.jsonl").read_text().splitlines()]
    assert [p["step"] for p in progress][:2] == ["pipeline", "ranker"]
    assert all(p["interactions"] == offline.QUICK_SIZE for p in progress)
    assert (
        tmp_path / "data" / f"synthetic-{offline.QUICK_SIZE}-seed0" / "synthetic.json"
    ).is_file()


def test_sizes_accept_suffixes_and_sort() -> None:
    assert offline.parse_sizes("20M, 1m,5000k") == [1_000_000, 5_000_000, 20_000_000]


def test_growth_compares_time_with_size() -> None:
    def size(n: int, seconds: float) -> dict[str, object]:
        steps = {"pipeline": {"seconds": seconds}}
        return {"interactions": n, "total_seconds": seconds, "ok": True, "steps": steps}

    (linear, worse) = offline.growth([size(1_000, 10.0), size(4_000, 40.0), size(8_000, 160.0)])

    assert linear["exponent"] == pytest.approx(1.0)
    assert linear["linear_or_better"]
    assert worse["exponent"] == pytest.approx(2.0)
    assert not worse["linear_or_better"]
    assert worse["step_exponents"] == {"pipeline": pytest.approx(2.0)}
