"""``recsys offline run|evaluate``: the offline job and the evaluation of a bundle.

Progress goes to stderr (one line per step as it finishes), results to stdout: a table,
or with ``--json`` one JSON object (``version``, ``metrics`` with ``ndcg@10`` ...).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from recsys.console import console, err_console
from shared.data.sources import DATASET_NAMES, MOVIELENS_100K, SYNTHETIC
from shared.errors import DataError
from shared.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from offline.spec import JobSpec

app = typer.Typer(help="Offline tier: train, evaluate and publish a bundle.", no_args_is_help=True)
LAKE = "lake"
SPLITS = ("benchmark", "temporal", "none")


def _split_choice(value: str) -> str:
    if value not in SPLITS:
        raise typer.BadParameter(f"{value!r}: use one of {', '.join(SPLITS)}")
    return value


@app.command()
def run(
    dataset: Annotated[
        str | None,
        typer.Option(help=f"Named dataset: {', '.join(DATASET_NAMES)} or {LAKE} (the event lake)."),
    ] = None,
    interactions: Annotated[
        Path | None, typer.Option(help="CSV or Parquet file (or Parquet folder) of interactions.")
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            help="Column mapping for --interactions/--holdout: user=..,item=..[,rating=..][,timestamp=..]."
        ),
    ] = None,
    items: Annotated[
        Path | None, typer.Option(help="Item metadata (Parquet: item_id, title, year, genres).")
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            callback=_split_choice,
            help="benchmark (per-user random 75/25, seed 42), temporal, or none (train on everything).",
        ),
    ] = "benchmark",
    holdout: Annotated[
        Path | None,
        typer.Option(help="Train on all of the input and evaluate on this file (same columns)."),
    ] = None,
    k: Annotated[int, typer.Option(min=1, max=1000, help="Cut-off of the metrics.")] = 10,
    candidates: Annotated[
        int | None,
        typer.Option(
            min=1, max=10_000, help="Candidates per user (default: setting candidates_per_user)."
        ),
    ] = None,
    min_user_interactions: Annotated[int, typer.Option(min=1)] = 1,
    min_item_interactions: Annotated[int, typer.Option(min=1)] = 1,
    rating_max: Annotated[
        float | None, typer.Option(help="Ratings above this are dropped (and counted).")
    ] = None,
    ranker: Annotated[
        bool, typer.Option(help="Train the torch ranker (else rank by the blend).")
    ] = True,
    promote: Annotated[
        bool, typer.Option(help="Make the new bundle and its candidates live.")
    ] = True,
    recommendations_out: Annotated[
        Path | None,
        typer.Option(
            help="Write every evaluated user's final top-k (user_id, item_id, rank, score); .csv or .parquet."
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run the offline job: Spark pipeline, generators, ranker, index, bundle, candidates."""
    from offline.job import run_offline
    from offline.pipeline.clean import CleanParams
    from offline.pipeline.split import SplitParams
    from offline.spec import JobSpec

    settings = Settings()
    source, label, meta = _source(settings, dataset, interactions, columns)
    if items is not None:
        meta = _items(items)
    holdout_frame = _holdout(settings, holdout, columns) if holdout is not None else None
    spec = JobSpec(
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
        candidates_per_user=candidates or settings.candidates_per_user,
        train_ranker=ranker,
        promote=promote,
        recommendations_out=recommendations_out,
    )
    started = time.perf_counter()

    def progress(step: str, seconds: float, detail: str) -> None:
        err_console.print(f"[green]✓[/] {step:<11} {seconds:7.1f}s  {detail}", soft_wrap=True)

    result = run_offline(settings, spec, progress)
    total = time.perf_counter() - started
    out: dict[str, Any] = {
        "version": result.version,
        "bundle": str(result.bundle),
        "promoted": result.promoted,
        "metrics": result.metrics,
        "seconds": {**result.seconds, "total": total},
    }
    if json:
        console.print_json(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return
    _print_summary(out, result.report, spec)


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


def _print_summary(out: dict[str, Any], report: dict[str, Any], spec: JobSpec) -> None:
    from rich.table import Table

    console.print(
        f"bundle [bold]{out['version']}[/] at {out['bundle']}"
        + (" (live)" if out["promoted"] else " (not promoted)")
    )
    metrics = out["metrics"]
    if not metrics:
        console.print("no evaluation (split none): trained on everything")
        return
    table = Table(
        "list", *(f"{m}@{spec.k}" for m in ("map", "ndcg", "precision", "recall")), "coverage"
    )
    rows = {"final (ranked)": metrics, **report.get("baselines", {})}
    for name, values in rows.items():
        table.add_row(
            name,
            *(f"{values[f'{m}@{spec.k}']:.4f}" for m in ("map", "ndcg", "precision", "recall")),
            f"{values[f'coverage@{spec.k}']:.3f}",
        )
    console.print(table)
    console.print(f"report: {out['bundle']}/report.md")


@app.command()
def evaluate(
    bundle: Annotated[str, typer.Argument(help="Bundle version (see `recsys models list`).")],
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Re-evaluate a bundle's stored candidate lists on the test part it was built with."""
    from offline.evaluate_bundle import evaluate_bundle

    out = evaluate_bundle(Settings(), bundle)
    if json:
        console.print_json(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return
    console.print(
        f"bundle [bold]{bundle}[/]: {out['users']:,} users evaluated from the candidate store"
    )
    for name, value in out["metrics"].items():
        if name != "users":  # printed above
            console.print(f"  {name:<22} {value:.4f}")
