"""The event lake the nearline worker appends to and the next offline run reads.

Layout, under ``settings.lake_dir``::

    2026-11-29_events-p003-00000000000000012345.parquet

one file per UTC date of the events, log partition and checkpoint, named by the date, the
topic, the log partition and the *smallest log offset of the rows in it*. The folder is flat
because ``offline.pipeline.ingest`` reads the lake with ``spark.read.parquet(lake)``: Spark
does not descend into plain sub-folders, and Hive-style ``date=...`` folders would add a
``date`` column that the reader rejects (allowing it there is the way to real partitions).
A date's files are ``<date>_*.parquet``. Columns: ``user_id``, ``item_id``, ``timestamp`` (epoch seconds,
float), ``value`` (null for implicit events: the ingest step counts them as 1.0, and
leaves impressions out: they are exposure, not feedback),
``event_id``, ``type``, ``context`` (JSON text) and ``schema_version``. An impression event
of the current shape (one per answer, see :mod:`shared.events`) is one row, its ``item_id``
the first item shown and the whole list in the context JSON under ``"shown"`` (a list of
``{item_id, position, source}``; no context value is ever a list), so the lake's columns
are unchanged.

Why replays do not duplicate rows: the worker commits log offsets only after a checkpoint's
files are written, so a restarted worker re-reads from the first uncommitted offset ``c``.
Every file written since ``c`` holds only rows at offsets >= ``c``, and the file whose rows of
one date and partition start at offset ``m`` is rewritten, under the same name, by the
replayed checkpoint whose rows of that date and partition start at ``m`` (no row of that date
lies between ``c`` and ``m``, else the first file would have started there). Files are written
to a temporary name and renamed, so a reader never sees half a file. As a second line of
defence (a zombie member of a group can still write after losing its partitions),
:func:`read_lake` and the offline ``clean`` step drop duplicate events.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shared.events import Event

SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("timestamp", pa.float64()),
        ("value", pa.float64()),
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("context", pa.string()),
        ("schema_version", pa.int32()),
    ]
)


@dataclass
class _Rows:
    offsets: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def lake_date(timestamp: float) -> str:
    """The UTC date of ``timestamp`` (epoch seconds), as the lake's partitions name it."""
    return _utc_day(int(timestamp // 86_400))  # per event: formatted once per day seen


@functools.lru_cache(maxsize=64)
def _utc_day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


class LakeWriter:
    """Buffers events with their log position; ``flush`` writes them as Parquet files."""

    def __init__(self, root: Path, topic: str) -> None:
        self.root = root
        self.topic = topic
        self._pending: dict[tuple[str, int], _Rows] = defaultdict(_Rows)
        self.rows_written = 0
        self.files_written = 0

    @property
    def pending(self) -> int:
        return sum(len(rows.offsets) for rows in self._pending.values())

    def add(self, partition: int, offset: int, event: Event) -> None:
        rows = self._pending[(lake_date(event.timestamp), partition)]
        rows.offsets.append(offset)
        rows.events.append(event)

    def file_for(self, date: str, partition: int, first_offset: int) -> Path:
        return self.root / f"{date}_{self.topic}-p{partition:03d}-{first_offset:020d}.parquet"

    def flush(self) -> list[Path]:
        """Write every buffered row; the buffer is emptied only when all files are in place."""
        written = self.write(self._pending)
        self._pending = defaultdict(_Rows)
        return written

    def take(self) -> dict[tuple[str, int], _Rows]:
        """The buffered rows, handed over for :meth:`write` (elsewhere, later); the buffer
        starts empty again."""
        taken, self._pending = self._pending, defaultdict(_Rows)
        return taken

    def write(self, rows_by_file: dict[tuple[str, int], _Rows]) -> list[Path]:
        """Write rows taken from the buffer, one file per date and log partition."""
        written = []
        for (date, partition), rows in sorted(rows_by_file.items()):
            path = self.file_for(date, partition, min(rows.offsets))
            _write_atomic(path, _table(rows.events))
            written.append(path)
        self.rows_written += sum(len(rows.offsets) for rows in rows_by_file.values())
        self.files_written += len(written)
        return written


def _table(events: list[Event]) -> pa.Table:
    return pa.table(
        {
            "user_id": [e.user_id for e in events],
            "item_id": [e.item_id for e in events],
            "timestamp": [e.timestamp for e in events],
            "value": [e.value for e in events],
            "event_id": [e.event_id for e in events],
            "type": [e.type.value for e in events],
            "context": [orjson.dumps(e.lake_context()).decode() for e in events],
            "schema_version": [e.schema_version for e in events],
        },
        schema=SCHEMA,
    )


def _write_atomic(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_lake(root: Path) -> pd.DataFrame:
    """Every event in the lake, one row per ``event_id`` (the first file in name order wins)."""
    files = sorted(p for p in root.glob("*.parquet") if not p.name.startswith("."))
    table = (
        pa.concat_tables(pq.read_table(f, schema=SCHEMA) for f in files)
        if files
        else SCHEMA.empty_table()
    )
    frame: pd.DataFrame = table.to_pandas()
    return frame.drop_duplicates("event_id").reset_index(drop=True)
