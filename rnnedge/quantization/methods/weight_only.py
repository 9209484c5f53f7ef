"""WeightOnly: MatMul weights to 4 or 8 bits in blocks (ONNX Runtime's MatMulNBitsQuantizer); activations float.

The quantizer takes MatMul only, so every plain Gemm is first rewritten as MatMul (+ Add). Each
quantized MatMul becomes one com.microsoft MatMulNBits (an ONNX Runtime contrib op: TensorRT cannot
take it). The embedding Gather and the state stay float.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnxruntime.quantization import QuantFormat
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

from rnnedge.quantization.builder import VariantBuilder, handles
from rnnedge.quantization.graph_edits import gemm_to_matmul
from rnnedge.quantization.recipes import WeightOnly


@handles(WeightOnly)
class WeightOnlyBuilder(VariantBuilder):
    recipe: WeightOnly
    op_types = ("MatMul",)

    def prepare(self) -> None:
        self.gemms_rewritten = gemm_to_matmul(self.proto)

    def details(self) -> dict[str, Any]:
        return {
            "format": "MatMulNBits (com.microsoft)",
            "bits": self.recipe.bits,
            "block_size": self.recipe.block_size,
            "symmetric": self.recipe.symmetric,
            "accuracy_level": self.recipe.accuracy_level,
            "activation_type": "float32",
            "gemm_rewritten_as_matmul": self.gemms_rewritten,
        }

    def convert(self, keep_float: list[str]) -> onnx.ModelProto:
        model = onnx.ModelProto.FromString(self.proto.SerializeToString())
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=self.recipe.bits,
            block_size=self.recipe.block_size,
            is_symmetric=self.recipe.symmetric,
            accuracy_level=self.recipe.accuracy_level,
            nodes_to_exclude=self.excluded(keep_float),
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=self.op_types,
        )
        quantizer.process()
        result: onnx.ModelProto = quantizer.model.model
        return result
