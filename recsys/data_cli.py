"""``recsys data``: download, generate and inspect datasets.

Library errors (shared.errors.RecsysError) propagate; the root CLI prints them as one line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shared.data.sources import DATASET_NAMES, MOVIELENS_100K_URL, SYNTHETIC
from shared.settings import Settings

if TYPE_CHECKING:
    from rich.table import Table

    from shared.data.stats import InteractionStats

# The commands import pandas, pyarrow and httpx when they run, not when this module is
# imported, so that `recsys --help` stays fast.

app = typer.Typer(help="Datasets: download, generate, inspect.", no_args_is_help=True)
download_app = typer.Typer(help="Fetch a public dataset, checksum-verified.", no_args_is_help=True)
generate_app = typer.Typer(help="Generate a dataset.", no_args_is_help=True)
app.add_typer(download_app, name="download")
app.add_typer(generate_app, name="generate")


@download_app.command("movielens-100k")
def download_movielens(
    dest: Annotated[
        Path | None,
        typer.Option(help="Folder to install into (default: settings movielens_dir)."),
    ] = None,
    url: Annotated[str, typer.Option(help="Zip to fetch (holding ml-100k/u.data ...).")] = (
        MOVIELENS_100K_URL
    ),
) -> None:
    """Download MovieLens 100K, verify every file's sha256, then install it atomically."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from shared.data.download import download_movielens_100k

    target = dest if dest is not None else Settings().movielens_dir
    console = Console(stderr=True)
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("ml-100k.zip", total=None)

        def advance(received: int, total: int | None) -> None:
            progress.update(task, completed=received, total=total)

        result = download_movielens_100k(target, url, progress=advance)
    elapsed = time.perf_counter() - started
    if result.downloaded:
        typer.echo(
            f"MovieLens 100K: {len(result.files)} files installed in {target}, "
            f"sha256 verified ({elapsed:.1f}s)"
        )
    else:
        typer.echo(f"MovieLens 100K: already present and verified in {target}")


@generate_app.command("synthetic")
def generate_synthetic(
    *,
    interactions: Annotated[int, typer.Option("--interactions", "-n", min=1, help="Events.")],
    users: Annotated[
        int | None, typer.Option(min=1, help="Users (default: interactions/100)")
    ] = None,
    items: Annotated[
        int | None, typer.Option(min=1, help="Items (default: interactions/500)")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same data.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: <datasets_dir>/synthetic).")
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows per Parquet part file.")] = (
        1_000_000
    ),
) -> None:
    """Generate synthetic interactions (long-tail, taste clusters, sessions) as Parquet."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from shared.data.synthetic_io import write_synthetic

    target = out if out is not None else Settings().datasets_dir / SYNTHETIC
    started = time.perf_counter()
    with Progress(
        TextColumn("generating"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("synthetic", total=interactions)

        def advance(written: int, total: int) -> None:
            progress.update(task, completed=written, total=total)

        try:
            summary = write_synthetic(
                target, interactions, users, items, seed, chunk_size=chunk_size, progress=advance
            )
        except ValueError as exc:  # sizes that cannot make a dataset
            raise typer.BadParameter(str(exc)) from exc
    elapsed = time.perf_counter() - started
    typer.echo(
        f"synthetic: {summary.n_interactions:,} interactions, {summary.n_users:,} users, "
        f"{summary.n_items:,} items in {summary.n_parts} part(s) at {target} ({elapsed:.1f}s)"
    )


@app.command("info")
def info(
    dataset: Annotated[
        str, typer.Argument(help=f"A dataset name ({', '.join(DATASET_NAMES)}) or a path.")
    ],
    columns: Annotated[
        str | None,
        typer.Option(help="Column mapping for CSV/Parquet: user=userId,item=movieId[,...]."),
    ] = None,
    delimiter: Annotated[str | None, typer.Option(help="CSV delimiter (default: guess).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print counts, density, time range and rating histogram of a dataset."""
    from rich.console import Console

    from shared.data.catalog import DatasetPaths, load_dataset
    from shared.data.interactions import parse_column_mapping
    from shared.data.stats import describe_interactions

    settings = Settings()
    paths = DatasetPaths(settings.movielens_dir, settings.datasets_dir)
    mapping = parse_column_mapping(columns) if columns else None
    frame, source = load_dataset(dataset, paths, mapping, delimiter=delimiter)
    stats = describe_interactions(frame, source)
    if as_json:
        typer.echo(json.dumps(stats.to_dict(), indent=2))
    else:
        Console().print(_stats_table(stats))


def _stats_table(stats: InteractionStats) -> Table:
    from rich.table import Table

    table = Table(title=stats.source, show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("interactions", f"{stats.interactions:,}")
    table.add_row("users", f"{stats.users:,}")
    table.add_row("items", f"{stats.items:,}")
    table.add_row("density", f"{stats.density:.4%}")
    table.add_row("time range", stats.time_range)
    for value, count in stats.ratings.items():
        share = count / stats.interactions if stats.interactions else 0.0
        table.add_row(f"rating {value}", f"{count:,} ({share:.1%})")
    return table
