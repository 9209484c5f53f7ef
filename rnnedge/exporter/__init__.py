"""Checkpoint -> verified ONNX graphs (parallel.onnx for long sequences / GPU, step.onnx for embedded).

    from rnnedge.exporter import export_model
    result = export_model("ckpt/", "out/")      # writes parallel.onnx, step.onnx, manifest.json

Imports torch (tracing) and onnx; the runtime and quantization packages never import this one.
"""

from rnnedge.exporter.export import ExportResult, export_model
from rnnedge.exporter.verify import CheckResult
from rnnedge.tensorrt_rules import check_tensorrt

__all__ = ["CheckResult", "ExportResult", "check_tensorrt", "export_model"]
