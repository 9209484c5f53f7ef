"""Precision variants of exported graphs (onnx + onnxruntime + numpy; never torch).

    from rnnedge.quantization import quantize_export
    quantize_export("out/", "int8-qdq", calib_text="train.txt", eval_text="val.txt", per_channel=True)

Recipes (recipes.py) describe a method; their handlers (methods/) make the graphs with ONNX Runtime's
own tools; quantize.py checks and writes `<graph>.<recipe>.onnx` and the manifest's `variants` entry.
"""

from __future__ import annotations

from rnnedge.quantization.quantize import QuantizeResult, quantize_export
from rnnedge.quantization.recipes import (
    PRESETS,
    DynamicInt8,
    Fp16,
    Recipe,
    StaticQdqInt8,
    WeightOnly,
    recipe,
    recipe_from_dict,
)

__all__ = [
    "PRESETS",
    "DynamicInt8",
    "Fp16",
    "QuantizeResult",
    "Recipe",
    "StaticQdqInt8",
    "WeightOnly",
    "quantize_export",
    "recipe",
    "recipe_from_dict",
]
