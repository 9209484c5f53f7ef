"""The whole job in one call: checkpoint -> ONNX graphs -> precision variant -> drift report -> sample.

    from rnnedge.pipeline import PipelineConfig, run_pipeline
    summary = run_pipeline(PipelineConfig(out="runs/demo"))   # the bundled default model, offline

Everything is checked before the first stage runs; every file is written atomically; a run that fails
or is interrupted removes what it had created and leaves whatever was in the folder before.
"""

from rnnedge.pipeline.config import PipelineConfig
from rnnedge.pipeline.run import SUMMARY, run_pipeline

__all__ = ["SUMMARY", "PipelineConfig", "run_pipeline"]
