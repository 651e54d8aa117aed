"""A tiny DAG runner whose step outputs are content-addressed folders.

A step's output lives at ``<work dir>/<step>/<key>/`` where ``key`` hashes the step's
code version, its parameters and the keys of its inputs (a source's fingerprint counts as
a parameter). Each output table is a Parquet folder in there, and ``_MANIFEST.json``,
written last, records row counts and whatever the step reports (drop counts, ...).

* Unchanged step: the folder and its manifest exist, so the step is skipped (cached).
* Changed parameter, code version or input: a new key, hence a new folder; old outputs
  stay, so switching a parameter back is a cache hit again.
* Failed step: it wrote into ``<step>/.tmp-<key>-<random>/``, which is removed; the final
  folder appears only through a rename after the manifest is written, so a folder without
  a manifest is never taken for a finished output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

MANIFEST = "_MANIFEST.json"
_KEY_CHARS = 16  # 64 bits of sha256: no collision in any realistic number of runs


@dataclass(frozen=True)
class StepOutput:
    """A finished step: where its tables are and what its manifest says."""

    name: str
    key: str
    path: Path
    rows: dict[str, int]
    info: dict[str, Any]
    cached: bool
    seconds: float

    def table(self, name: str) -> Path:
        """The Parquet folder of one output table."""
        return self.path / name


@dataclass(frozen=True)
class StepContext:
    """What a step's body gets: the session, its inputs' outputs, its parameters."""

    spark: SparkSession
    inputs: Mapping[str, StepOutput]
    params: Mapping[str, Any]

    def read(self, step: str, table: str) -> DataFrame:
        """One table of an upstream step, read back from its Parquet folder."""
        return self.spark.read.parquet(str(self.inputs[step].table(table)))


# The body returns its output tables by name and extra manifest entries: JSON-able values,
# or :class:`AfterWrite` entries computed from the row counts of the written tables.
StepBody = Callable[[StepContext], tuple[dict[str, DataFrame], dict[str, Any]]]


@dataclass(frozen=True)
class AfterWrite:
    """A manifest entry known only once the tables are written: ``compute`` gets the rows
    written per table. It lets a step skip a count (a full pass over its output) that the
    runner's count of the written files makes redundant; raising there fails the step."""

    compute: Callable[[Mapping[str, int]], Any]


@dataclass(frozen=True)
class Step:
    """A named step: inputs (upstream step names), parameters, code version and body.

    Bump ``code_version`` whenever the body's output for the same inputs changes; that
    is what invalidates the outputs written by the old code.
    """

    name: str
    body: StepBody
    code_version: str
    inputs: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)

    def key(self, upstream: Mapping[str, StepOutput]) -> str:
        """Hash of (code version, parameters, input keys): the output folder's name."""
        payload = {
            "code_version": self.code_version,
            "params": self.params,
            "inputs": {name: upstream[name].key for name in self.inputs},
        }
        text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:_KEY_CHARS]


def run_step(
    spark: SparkSession, step: Step, work_dir: Path, upstream: Mapping[str, StepOutput]
) -> StepOutput:
    """Return the step's output, computing it only when no finished output exists."""
    started = time.perf_counter()
    key = step.key(upstream)
    final = work_dir / step.name / key
    manifest = final / MANIFEST
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        return _output(step.name, key, final, recorded, cached=True, started=started)
    temp = work_dir / step.name / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    temp.mkdir(parents=True)
    try:
        context = StepContext(spark, {name: upstream[name] for name in step.inputs}, step.params)
        tables, info = step.body(context)
        rows = {}
        for table, frame in tables.items():
            frame.write.mode("overwrite").parquet(str(temp / table))
            # Counting what was written (not the plan) keeps the count true to the files.
            rows[table] = spark.read.parquet(str(temp / table)).count()
        info = {k: v.compute(rows) if isinstance(v, AfterWrite) else v for k, v in info.items()}
        recorded = {
            "step": step.name,
            "key": key,
            "code_version": step.code_version,
            "params": step.params,
            "inputs": {name: upstream[name].key for name in step.inputs},
            "rows": rows,
            "info": info,
            "written_at": time.time(),
        }
        (temp / MANIFEST).write_text(json.dumps(recorded, indent=2, sort_keys=True, default=str))
        if final.exists():  # a leftover without a manifest (written by hand, or by old code)
            shutil.rmtree(final)
        os.replace(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return _output(step.name, key, final, recorded, cached=False, started=started)


def _output(
    name: str, key: str, path: Path, recorded: Mapping[str, Any], *, cached: bool, started: float
) -> StepOutput:
    return StepOutput(
        name=name,
        key=key,
        path=path,
        rows={str(k): int(v) for k, v in recorded["rows"].items()},
        info=dict(recorded["info"]),
        cached=cached,
        seconds=time.perf_counter() - started,
    )
