"""The analyst notebooks run end to end on MovieLens 100K, and are committed without outputs.

Two real offline runs (the session's default ``recsys offline run --dataset movielens-100k``,
live, shared with the quality test, and a ``--no-ranker`` one that reuses its
content-addressed pipeline and is not promoted) make a registry with two bundles; every notebook then executes in a fresh kernel of this Python against
it (``RECSYS_HOME``) and must finish without error and draw its figures.

They also run on a registry trained from an interactions file without item metadata (no
titles, years or genres) and without a rating column, derived from the same MovieLens
ratings: each notebook then skips or replaces what needs them, saying so, and
``explore_dataset`` explores that file.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from nearline.lake import LakeWriter
from offline.analysis import experiments
from shared import bundle as layout
from shared.bundle import item_embeddings
from shared.events import Event, EventType
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.storage.factory import open_event_log
from tests.conftest import OfflineRun, offline_cli, offline_run_cli

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# Figures each notebook draws (image/png outputs of its plot cells).
FIGURES = {
    "explore_dataset.ipynb": 4,
    "compare_bundles.ipynb": 4,
    "inspect_user.ipynb": 1,
    "compare_arms.ipynb": 2,
    "drift.ipynb": 1,  # training against live, one panel per feature
}
MAX_NOTEBOOK_BYTES = 40_000
# What each notebook prints where it skips or replaces what needs item metadata (titles,
# years, genres) or ratings, on bundles trained from an interactions file without them
# (compare_arms needs neither). Their figure counts stay those of FIGURES.
NO_METADATA_SAYS = {
    "explore_dataset.ipynb": (
        "Every interaction has the same rating (1.0): the file has no rating column (read as"
        " implicit feedback, each interaction weighing 1.0) or a constant one, so the ratings"
        " panel is skipped."
    ),
    "compare_bundles.ipynb": (
        " (trained from an interactions file without --items): its genre diversity is NaN in"
        " the table and not drawn below."
    ),
    "inspect_user.ipynb": (
        "No item metadata in this bundle (trained from an interactions file without --items):"
        " items are shown by id, and the genre panel is replaced by one of item popularity."
    ),
    "compare_arms.ipynb": "",
    "drift.ipynb": "",
}


@pytest.fixture(scope="module")
def _runs() -> dict[str, Path]:
    return {}  # filled once by the first test that needs the runs


@pytest.fixture
def offline_home(_runs: dict[str, Path], ml100k_run: OfflineRun, movielens_dir: Path) -> Path:
    """RECSYS_HOME holding two bundles of MovieLens 100K; the default (ranker) one is live.

    The session's default run (``ml100k_run``, shared with the quality test) plus a
    ``--no-ranker`` one that is not promoted (it reuses the content-addressed pipeline)."""
    if "home" not in _runs:
        offline_run_cli(ml100k_run.home, movielens_dir, "--no-ranker", "--no-promote")
        _runs["home"] = ml100k_run.home
    return _runs["home"]


@pytest.fixture(scope="module")
def no_metadata_home(
    movielens_dir_session: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """RECSYS_HOME with two bundles trained from ``interactions.csv``: MovieLens 100K's
    ``user_id, item_id, timestamp``, with neither item metadata nor a rating column; the
    ranker one is live, the ``--no-ranker`` one is not promoted. Returns (home, file)."""
    folder = tmp_path_factory.mktemp("no-metadata")
    data = folder / "interactions.csv"
    ratings = pd.read_csv(
        movielens_dir_session / "u.data",
        sep="\t",
        names=["user_id", "item_id", "rating", "timestamp"],
    )
    ratings[["user_id", "item_id", "timestamp"]].to_csv(data, index=False)
    home = folder / "var"
    offline_cli(home, "--interactions", str(data))
    offline_cli(home, "--interactions", str(data), "--no-ranker", "--no-promote")
    return home, data


def _pngs(nb: Any) -> list[bytes]:
    return [
        base64.b64decode(output["data"]["image/png"])
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]


def _execute(
    name: str,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    figures: int | None = None,
    **env: str,
) -> str:
    """Run notebook ``name`` in a fresh kernel against ``home``; check it finished and drew
    its figures (``figures``, default those of FIGURES); return everything it printed."""
    # The kernel inherits this environment: what an analyst sets before opening Jupyter.
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for variable in (
        "RECSYS_BUNDLES",
        "RECSYS_USER",
        "RECSYS_K",
        "RECSYS_DATASET",
        "RECSYS_EXPERIMENT_SURFACE",
        "RECSYS_REPLAY_USERS",
        "RECSYS_REPLAY_EVENT_LOG_URL",
        "RECSYS_EVENT_LOG_URL",
        "RECSYS_EVENT_LAKE_DIR",
    ):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    nbformat.write(nb, tmp_path / name)  # the executed copy, to look at after a failure
    pngs = _pngs(nb)
    assert len(pngs) == (FIGURES[name] if figures is None else figures), f"{name}: {len(pngs)}"
    assert all(len(png) > 10_000 for png in pngs), "an empty-looking figure"
    printed = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
    assert f"RECSYS_HOME: {home.resolve()}" in printed  # read the test's runs, not var/
    if name == "compare_arms.ipynb":
        _check_replay_events(home)
    return printed


@pytest.mark.spark
@pytest.mark.timeout(1500)  # the first also makes both offline runs: 12 min seen on 2 busy cores
@pytest.mark.parametrize("name", list(FIGURES))
def test_notebook_runs_end_to_end(
    name: str,
    offline_home: Path,
    movielens_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    printed = _execute(
        name, offline_home, monkeypatch, tmp_path, RECSYS_MOVIELENS_DIR=str(movielens_dir)
    )
    # MovieLens has item metadata and ratings: nothing is skipped or replaced.
    assert not any(says and says in printed for says in NO_METADATA_SAYS.values())
    assert "No item metadata" not in printed


@pytest.mark.spark
@pytest.mark.timeout(900)  # the first also makes both offline runs: 1 min on 2 quiet cores
@pytest.mark.parametrize("name", list(FIGURES))
def test_notebook_runs_without_item_metadata(
    name: str,
    no_metadata_home: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home, data = no_metadata_home
    # No MovieLens folder: nothing may fall back to its metadata (u.item).
    printed = _execute(
        name,
        home,
        monkeypatch,
        tmp_path,
        RECSYS_DATASET=str(data),
        RECSYS_MOVIELENS_DIR=str(tmp_path / "no-movielens"),
    )
    assert NO_METADATA_SAYS[name] in printed


def _write_tail_lake(home: Path, movielens_dir: Path, lake: Path, n: int = 50_000) -> None:
    """The last ``n`` MovieLens ratings by time as live play events (timestamps now), users
    and their activity as they were, but every item swapped for one of the live bundle's
    least popular tenth (popularity decile 9): only the popularity feature moves far."""
    registry = ModelRegistry(Settings(home=home).registry_url)
    live = registry.live()
    assert live is not None
    bundle = registry.path(live.version)
    ids = item_embeddings(bundle).ids
    buckets = np.load(bundle / layout.DRIFT_ITEM_BUCKETS)
    tail = [item for item, bucket in zip(ids, buckets.tolist(), strict=True) if bucket == 9]
    ratings = pd.read_csv(
        movielens_dir / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"]
    ).sort_values("timestamp", kind="stable")
    writer = LakeWriter(lake, "events")
    for offset, user in enumerate(ratings["user_id"].astype(str).tail(n)):
        item = tail[offset % len(tail)]
        writer.add(0, offset, Event(user_id=user, item_id=item, type=EventType.PLAY))
    writer.flush()


@pytest.mark.spark
@pytest.mark.timeout(1500)  # the first test of the module also makes both offline runs
def test_drift_notebook_names_what_moved(
    offline_home: Path,
    movielens_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake = tmp_path / "lake"
    _write_tail_lake(offline_home, movielens_dir, lake)
    printed = _execute(
        "drift.ipynb", offline_home, monkeypatch, tmp_path, RECSYS_EVENT_LAKE_DIR=str(lake)
    )
    assert "live window: the lake's last 50,000 events since" in printed
    moved = re.search(r"Moved most: (\w+), PSI ([\d.]+) \(JS ([\d.]+) bits\), (.*)\.", printed)
    assert moved, printed
    assert moved.group(1) == "popularity"
    assert float(moved.group(2)) > 0.2
    assert 0 < float(moved.group(3)) <= 1
    assert moved.group(4) == "over 0.2: the population moved"


@pytest.mark.spark
@pytest.mark.timeout(1500)
def test_drift_notebook_without_live_events(
    offline_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "empty-lake"
    printed = _execute(
        "drift.ipynb", offline_home, monkeypatch, tmp_path, RECSYS_EVENT_LAKE_DIR=str(lake)
    )
    assert f"No live events yet: the event lake ({lake}) is empty or absent" in printed
    assert "Moved most" not in printed  # the figure: the training side alone


@pytest.mark.spark
@pytest.mark.timeout(1500)
def test_drift_notebook_on_a_bundle_without_profile(
    offline_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the live bundle with its drift files removed (as written before profiles):
    the notebook says there is nothing to compare and draws nothing."""
    source = ModelRegistry(Settings(home=offline_home).registry_url)
    live = source.live()
    assert live is not None
    home = tmp_path / "var"
    copy = ModelRegistry(Settings(home=home).registry_url)
    bundle = copy.root / "bundles" / live.version
    shutil.copytree(source.path(live.version), bundle)
    shutil.rmtree(bundle / Path(layout.DRIFT_PROFILE).parent)
    copy.promote(live.version)  # no manifest check: the copy's lacks the drift files
    assert copy.live() == live
    printed = _execute("drift.ipynb", home, monkeypatch, tmp_path, figures=0)
    assert f"Bundle {live.version} has no drift profile" in printed
    assert "nothing to compare live traffic with" in printed
    assert "live window" not in printed and "No live events" not in printed


def _check_replay_events(home: Path) -> None:
    """The replay logged both arms' impressions and simulated plays to its own event log;
    the tiers' event log got none of them."""
    replay = experiments.read_events(
        open_event_log(f"sqlite:///{home / 'replay-event-log.db'}"), "test", idle_polls=1
    )
    assert set(replay.loc[replay["type"] == "impression", "arm"]) == {"control", "blend"}
    plays = replay[replay["type"] == "play"]
    assert len(plays) > 0
    assert plays["simulated"].all()
    tiers = experiments.read_events(open_event_log(Settings(home=home).event_log_url), "test", 1)
    assert tiers.empty


@pytest.mark.parametrize("name", list(FIGURES))
def test_committed_notebooks_have_no_outputs(name: str) -> None:
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{name} has no code"
    for cell in code:
        assert cell.outputs == [], f"{name}: a cell with outputs (strip them before committing)"
        assert cell.execution_count is None, f"{name}: an execution count"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES


def test_every_notebook_is_tested() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(FIGURES)
