"""The ``split`` step: train/test parts by the same functions as ``offline.split``.

``benchmark``: the clean log is collected to pandas (ordered by ``source_row``) and handed
to :func:`offline.split.benchmark_split`, so the pipeline's parts are exactly the pure
version's, row for row: a second implementation in Spark would have to reproduce numpy's
legacy random stream. That bounds the benchmark split to logs that fit in the driver's
memory (it is the evaluation protocol of datasets like MovieLens).

``temporal`` (what production runs use): only the timestamp column is collected, the cut
is computed by :func:`offline.split.temporal_cut` (the pure version's own function), and
the rows are filtered in Spark, so big logs never pass through the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pyspark.sql import DataFrame
from pyspark.sql import functions as sf

from offline.pipeline.dag import Step, StepContext
from offline.pipeline.ingest import SCHEMA
from offline.split import BENCHMARK_SEED, benchmark_split, temporal_cut

CODE_VERSION = "split/2"
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
        if params.kind == "temporal":
            # Only the timestamps travel to the driver (8 bytes a row); rows stay in Spark.
            times = log.select("timestamp").toPandas()["timestamp"].to_numpy()
            cut = temporal_cut(times, params.test_fraction)
            before = sf.col("timestamp") < sf.lit(cut)
            return {"train": log.filter(before), "test": log.filter(~before)}, {"cut": cut}
        frame = log.orderBy("source_row").toPandas()
        train, test = benchmark_split(frame, ratio=params.ratio, seed=params.seed)
        tables = {
            "train": ctx.spark.createDataFrame(train.reset_index(drop=True), schema=SCHEMA),
            "test": ctx.spark.createDataFrame(test.reset_index(drop=True), schema=SCHEMA),
        }
        return tables, {}

    return Step("split", body, CODE_VERSION, inputs=("clean",), params=relevant)
