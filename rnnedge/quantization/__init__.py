"""int8 quantization of exported graphs (onnx + onnxruntime + numpy; never torch)."""

from __future__ import annotations

from rnnedge.quantization.quantize import QuantizeResult, quantize_export

__all__ = ["QuantizeResult", "quantize_export"]
