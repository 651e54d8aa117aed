"""``run_pipeline``: ingest -> clean -> split -> features, each step cached by content."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from offline.pipeline.clean import CleanParams, clean_step
from offline.pipeline.dag import StepOutput, run_step
from offline.pipeline.features import features_step
from offline.pipeline.ingest import Source, ingest_step
from offline.pipeline.split import SplitParams, split_step
from offline.spark import spark_session
from shared.data.catalog import DatasetPaths
from shared.settings import Settings


@dataclass(frozen=True)
class PipelineResult:
    """Each step's output (path, row counts, manifest info, timing, cached or not)."""

    steps: dict[str, StepOutput]

    def path(self, step: str, table: str) -> Path:
        """The Parquet folder of one step's table, e.g. ``path("split", "train")``."""
        return self.steps[step].table(table)

    @property
    def drops(self) -> dict[str, int]:
        """Rows ``clean`` dropped, by reason."""
        return {k: int(v) for k, v in self.steps["clean"].info["drops"].items()}

    @property
    def rows(self) -> dict[str, dict[str, int]]:
        return {name: out.rows for name, out in self.steps.items()}

    @property
    def seconds(self) -> dict[str, float]:
        return {name: out.seconds for name, out in self.steps.items()}

    @property
    def cached(self) -> dict[str, bool]:
        return {name: out.cached for name, out in self.steps.items()}


def default_work_dir(settings: Settings) -> Path:
    """Where step outputs go unless told otherwise: ``<home>/offline/pipeline``."""
    return settings.home / "offline" / "pipeline"


def run_pipeline(
    settings: Settings,
    source: Source,
    *,
    split: SplitParams | None = None,
    clean: CleanParams | None = None,
    reference_time: int | None = None,
    items: pd.DataFrame | None = None,
    work_dir: Path | None = None,
    spark: SparkSession | None = None,
) -> PipelineResult:
    """Run the offline steps on ``source``; unchanged steps are read from earlier runs.

    ``source`` is a dataset name or path (see ``shared.data.catalog.load_dataset``), an
    :class:`~offline.pipeline.ingest.EventLake` or a
    :class:`~offline.pipeline.ingest.FrameSource`. ``items`` (item_id, genres) adds genre
    columns to the item features. Without ``spark``, a session is built from settings
    and stopped at the end.
    """
    paths = DatasetPaths(settings.movielens_dir, settings.datasets_dir)
    steps = [
        ingest_step(source, paths),
        clean_step(clean or CleanParams()),
        split_step(split or SplitParams()),
        features_step(reference_time, items),
    ]
    own = spark is None
    session = spark or spark_session(settings, "recsys-offline-pipeline")
    root = work_dir or default_work_dir(settings)
    done: dict[str, StepOutput] = {}
    try:
        for step in steps:
            done[step.name] = run_step(session, step, root, done)
    finally:
        if own:
            session.stop()
    return PipelineResult(done)
