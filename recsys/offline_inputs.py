"""The data options ``recsys offline run`` and ``recsys offline tune`` share, and the job
specification built from them (which data, how it is cleaned and split, the cut-off).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared.data.sources import DATASET_NAMES, MOVIELENS_100K, SYNTHETIC
from shared.errors import DataError
from shared.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from offline.spec import JobSpec

LAKE = "lake"
SPLITS = ("benchmark", "temporal", "none")


def _split_choice(value: str) -> str:
    if value not in SPLITS:
        raise typer.BadParameter(f"{value!r}: use one of {', '.join(SPLITS)}")
    return value


# Options `run` and `tune` share: what data, how it is cleaned and split, the cut-off.
DatasetOpt = Annotated[
    str | None,
    typer.Option(help=f"Named dataset: {', '.join(DATASET_NAMES)} or {LAKE} (the event lake)."),
]
InteractionsOpt = Annotated[
    Path | None, typer.Option(help="CSV or Parquet file (or Parquet folder) of interactions.")
]
ColumnsOpt = Annotated[
    str | None,
    typer.Option(
        help="Column mapping for --interactions/--holdout: user=..,item=..[,rating=..][,timestamp=..]."
    ),
]
ItemsOpt = Annotated[
    Path | None, typer.Option(help="Item metadata (Parquet: item_id, title, year, genres).")
]
SplitOpt = Annotated[
    str,
    typer.Option(
        callback=_split_choice,
        help="benchmark (per-user random 75/25, seed 42), temporal, or none (train on everything).",
    ),
]
HoldoutOpt = Annotated[
    Path | None,
    typer.Option(help="Train on all of the input and evaluate on this file (same columns)."),
]
KOpt = Annotated[int, typer.Option(min=1, max=1000, help="Cut-off of the metrics.")]
MinUserOpt = Annotated[int, typer.Option(min=1)]
MinItemOpt = Annotated[int, typer.Option(min=1)]
RatingMaxOpt = Annotated[
    float | None, typer.Option(help="Ratings above this are dropped (and counted).")
]
TrialsOpt = Annotated[
    int | None, typer.Option(min=1, help="Most trials to run now (the study keeps earlier ones).")
]
MinutesOpt = Annotated[
    float | None, typer.Option(min=0.1, help="Most minutes to search (with --trials: first hit).")
]
StudyOpt = Annotated[
    str | None,
    typer.Option(help="Optuna study name (default: one per training data and k; resumes)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def job_spec(
    settings: Settings,
    *,
    dataset: str | None,
    interactions: Path | None,
    columns: str | None,
    split: str,
    k: int,
    min_user_interactions: int,
    min_item_interactions: int,
    rating_max: float | None,
    items: Path | None = None,
    holdout: Path | None = None,
    **rest: Any,
) -> JobSpec:
    """The job's specification from the data options `run` and `tune` share."""
    from offline.pipeline.clean import CleanParams
    from offline.pipeline.split import SplitParams
    from offline.spec import JobSpec

    source, label, meta = _source(settings, dataset, interactions, columns)
    if items is not None:
        meta = _items(items)
    holdout_frame = _holdout(settings, holdout, columns) if holdout is not None else None
    return JobSpec(
        source=source,
        label=label,
        split=SplitParams(kind="none" if holdout is not None else split),  # type: ignore[arg-type]
        clean=CleanParams(
            min_user_interactions=min_user_interactions,
            min_item_interactions=min_item_interactions,
            rating_max=rating_max,
        ),
        items=meta,
        holdout=holdout_frame,
        k=k,
        **rest,
    )


def _source(
    settings: Settings, dataset: str | None, interactions: Path | None, columns: str | None
) -> tuple[Any, str, pd.DataFrame | None]:
    from offline.pipeline.ingest import EventLake, FrameSource
    from shared.data.catalog import DatasetPaths, load_dataset
    from shared.data.interactions import parse_column_mapping

    if (dataset is None) == (interactions is None):
        raise DataError("give exactly one of --dataset NAME or --interactions PATH")
    if dataset is not None:
        if columns is not None:
            raise DataError("--columns applies to --interactions, not to --dataset")
        if dataset in (MOVIELENS_100K, SYNTHETIC):
            return dataset, dataset, dataset_items(settings, dataset)
        if dataset == LAKE:
            return EventLake(settings.lake_dir), str(settings.lake_dir), None
        raise DataError(
            f"--dataset {dataset!r}: unknown; use {', '.join((*DATASET_NAMES, LAKE))} "
            "or --interactions PATH"
        )
    assert interactions is not None
    mapping = parse_column_mapping(columns) if columns else None
    paths = DatasetPaths(settings.movielens_dir, settings.datasets_dir)
    frame, label = load_dataset(str(interactions), paths, mapping)
    return FrameSource(frame, name=label), label, None


def dataset_items(settings: Settings, dataset: str) -> pd.DataFrame | None:
    """The item metadata (titles, years, genres) of a named dataset, when it has any."""
    if dataset == MOVIELENS_100K:
        return _movielens_items(settings.movielens_dir)
    synthetic = settings.datasets_dir / SYNTHETIC / "items.parquet"
    return _items(synthetic) if dataset == SYNTHETIC and synthetic.is_file() else None


def _holdout(settings: Settings, path: Path, columns: str | None) -> pd.DataFrame:
    from shared.data.catalog import DatasetPaths, load_dataset
    from shared.data.interactions import parse_column_mapping

    mapping = parse_column_mapping(columns) if columns else None
    paths = DatasetPaths(settings.movielens_dir, settings.datasets_dir)
    frame, _ = load_dataset(str(path), paths, mapping)
    return frame


def _movielens_items(directory: Path) -> pd.DataFrame | None:
    from shared.data.movielens import load_items

    return load_items(directory) if (directory / "u.item").is_file() else None


def _items(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise DataError(f"--items {path}: file not found")
    frame = pd.read_parquet(path)
    missing = {"item_id", "genres"} - set(frame.columns)
    if missing:
        raise DataError(f"--items {path}: missing column(s) {', '.join(sorted(missing))}")
    frame["item_id"] = frame["item_id"].astype(str)
    frame["genres"] = [list(g) if g is not None else [] for g in frame["genres"]]
    return frame
