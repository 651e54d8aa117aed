"""The ``split`` step: train/test parts by the same functions as ``offline.split``.

The clean log is collected to pandas (ordered by ``source_row``) and handed to
:func:`offline.split.benchmark_split` or :func:`offline.split.temporal_split`, so the
pipeline's parts are exactly the pure version's, row for row: a second implementation in
Spark would have to reproduce numpy's legacy random stream. That bounds this step to logs
that fit in the driver's memory (tens of millions of rows at ~40 bytes each), which is
where the rest of the one-machine stack (implicit ALS, FAISS) sits too; a distributed
split for bigger logs is future work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pyspark.sql import DataFrame

from offline.pipeline.dag import Step, StepContext
from offline.pipeline.ingest import SCHEMA
from offline.split import BENCHMARK_SEED, benchmark_split, temporal_split

CODE_VERSION = "split/1"
SplitKind = Literal["benchmark", "temporal", "none"]


@dataclass(frozen=True)
class SplitParams:
    """``benchmark``: per-user ``ratio`` to train (seeded); ``temporal``: the last
    ``test_fraction`` of time to test; ``none``: everything is ``train``, no ``test``."""

    kind: SplitKind = "benchmark"
    ratio: float = 0.75
    seed: int = BENCHMARK_SEED
    test_fraction: float = 0.2

    def relevant(self) -> dict[str, Any]:
        """Only the fields the kind uses, so that an unused one does not change the key."""
        if self.kind == "benchmark":
            return {"kind": self.kind, "ratio": self.ratio, "seed": self.seed}
        if self.kind == "temporal":
            return {"kind": self.kind, "test_fraction": self.test_fraction}
        if self.kind == "none":
            return {"kind": self.kind}
        raise ValueError(f"unknown split {self.kind!r}: use benchmark, temporal or none")


def split_step(params: SplitParams) -> Step:
    """The split step reading ``clean``'s ``interactions``; tables ``train`` (and ``test``)."""
    relevant = params.relevant()

    def body(ctx: StepContext) -> tuple[dict[str, DataFrame], dict[str, Any]]:
        log = ctx.read("clean", "interactions")
        if params.kind == "none":
            return {"train": log}, {}
        frame = log.orderBy("source_row").toPandas()
        if params.kind == "benchmark":
            train, test = benchmark_split(frame, ratio=params.ratio, seed=params.seed)
        else:
            train, test = temporal_split(frame, params.test_fraction)
        tables = {
            "train": ctx.spark.createDataFrame(train.reset_index(drop=True), schema=SCHEMA),
            "test": ctx.spark.createDataFrame(test.reset_index(drop=True), schema=SCHEMA),
        }
        return tables, {}

    return Step("split", body, CODE_VERSION, inputs=("clean",), params=relevant)
