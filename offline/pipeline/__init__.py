"""The offline pipeline: content-addressed Spark steps (ingest, clean, split, features)."""

from offline.pipeline.clean import CleanParams
from offline.pipeline.dag import Step, StepContext, StepOutput, run_step
from offline.pipeline.ingest import EventLake, FrameSource, Source
from offline.pipeline.run import PipelineResult, run_pipeline
from offline.pipeline.split import SplitParams

__all__ = [
    "CleanParams",
    "EventLake",
    "FrameSource",
    "PipelineResult",
    "Source",
    "SplitParams",
    "Step",
    "StepContext",
    "StepOutput",
    "run_pipeline",
    "run_step",
]
