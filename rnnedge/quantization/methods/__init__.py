"""The recipe handlers, one module per method; importing this package registers them all (the one place).

dynamic      DynamicInt8    -> quantize_dynamic (MatMulInteger), Gemm rewritten to MatMul first
qdq          StaticQdqInt8  -> quantize_static, QDQ, symmetric int8, calibrated over timesteps
fp16         Fp16           -> onnxruntime.transformers.float16.convert_float_to_float16
weight_only  WeightOnly     -> MatMulNBitsQuantizer (4 or 8 bits), Gemm rewritten to MatMul first
qnn          QnnQdq         -> get_qnn_qdq_config + quantize (qnn-htp: every op, the state included)
             HtpFp16        -> the float graph, run in the HTP's fp16 mode
"""

from __future__ import annotations

from pathlib import Path

import onnx

from rnnedge.graphmeta import GraphInfo
from rnnedge.quantization.builder import Feed, VariantBuilder, handler_of
from rnnedge.quantization.methods import dynamic, fp16, qdq, qnn, weight_only
from rnnedge.quantization.recipes import Recipe

__all__ = ["builder_for", "dynamic", "fp16", "qdq", "qnn", "weight_only"]


def builder_for(
    recipe: Recipe, proto: onnx.ModelProto, info: GraphInfo, workdir: Path, feeds: list[Feed] | None = None
) -> VariantBuilder:
    """The registered handler of `type(recipe)`, set up for one fp32 graph (`proto`, named nodes)."""
    return handler_of(recipe)(recipe, proto, info, workdir, feeds)
