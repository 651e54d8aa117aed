"""Write synthetic datasets to disk in bounded memory, and recognise them when reading.

Layout of an output folder::

    <out_dir>/interactions/part-00000.parquet ...  canonical columns, chunk_size rows each
    <out_dir>/items.parquet                          item_id, title, year, genres
    <out_dir>/synthetic.json                         sizes, seed and options used

The folder is assembled beside ``out_dir`` and renamed into place at the end, so an
interrupted run leaves no half-written dataset; an earlier synthetic dataset at
``out_dir`` is replaced, any other non-empty folder is refused.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shared.data.synthetic import (
    SyntheticOptions,
    SyntheticSpec,
    World,
    block_table,
    build_world,
    id_labels,
    items_frame,
    iter_blocks,
)
from shared.errors import DataError

MARKER = "synthetic.json"
INTERACTIONS_DIR = "interactions"
ITEMS_FILE = "items.parquet"

# Called with (interactions written so far, total to write).
WriteProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class SyntheticSummary:
    """What :func:`write_synthetic` wrote."""

    out_dir: Path
    n_interactions: int
    n_users: int
    n_items: int
    n_parts: int


def is_synthetic_dir(path: Path) -> bool:
    """True for a folder written by :func:`write_synthetic`."""
    return (path / MARKER).is_file() and (path / INTERACTIONS_DIR).is_dir()


def write_synthetic(
    out_dir: Path | str,
    n_interactions: int,
    n_users: int | None = None,
    n_items: int | None = None,
    seed: int = 0,
    *,
    options: SyntheticOptions | None = None,
    chunk_size: int = 1_000_000,
    progress: WriteProgress | None = None,
) -> SyntheticSummary:
    """Generate a dataset block by block and write it as Parquet part files."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    out = Path(out_dir)
    if out.exists() and not is_synthetic_dir(out) and (out.is_file() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not a synthetic dataset; refusing to overwrite")
    spec = SyntheticSpec.build(n_interactions, n_users, n_items, seed, options)
    world = build_world(spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        n_parts = _write_parts(world, staging / INTERACTIONS_DIR, chunk_size, progress)
        pq.write_table(
            pa.Table.from_pandas(items_frame(world), preserve_index=False), staging / ITEMS_FILE
        )
        (staging / MARKER).write_text(json.dumps(_describe(spec), indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SyntheticSummary(out, spec.n_interactions, spec.n_users, spec.n_items, n_parts)


def _write_parts(
    world: World, folder: Path, chunk_size: int, progress: WriteProgress | None
) -> int:
    folder.mkdir()
    user_labels = id_labels("u", world.spec.n_users)
    item_labels = id_labels("i", world.spec.n_items)
    total = world.spec.n_interactions
    writer: pq.ParquetWriter | None = None
    in_part = written = n_parts = 0
    try:
        for block in iter_blocks(world):
            table = block_table(block, user_labels, item_labels)
            while table.num_rows:
                if writer is None:
                    path = folder / f"part-{n_parts:05d}.parquet"
                    writer = pq.ParquetWriter(path, table.schema)
                    n_parts += 1
                take = min(chunk_size - in_part, table.num_rows)
                writer.write_table(table.slice(0, take))
                table = table.slice(take)
                in_part += take
                written += take
                if in_part == chunk_size:  # part full: start a new one on the next rows
                    writer.close()
                    writer, in_part = None, 0
            if progress is not None:
                progress(written, total)
    finally:
        if writer is not None:
            writer.close()
    return n_parts


def _describe(spec: SyntheticSpec) -> dict[str, object]:
    return {
        "generator": "shared.data.synthetic",
        "n_interactions": spec.n_interactions,
        "n_users": spec.n_users,
        "n_items": spec.n_items,
        "seed": spec.seed,
        "options": dataclasses.asdict(spec.options),
    }
