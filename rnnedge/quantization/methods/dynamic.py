"""DynamicInt8: ONNX Runtime's quantize_dynamic (int8 weights, uint8 activations quantized per call).

The dynamic quantizer takes MatMul, not Gemm, so every plain Gemm is first rewritten as MatMul (+ Add).
Its DynamicQuantizeLinear/MatMulInteger are ONNX Runtime CPU ops: TensorRT cannot take the result
(recorded per graph, for information).
"""

from __future__ import annotations

from typing import Any

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from rnnedge.quantization.builder import VariantBuilder, handles
from rnnedge.quantization.graph_edits import gemm_to_matmul, isolate_outputs
from rnnedge.quantization.recipes import DynamicInt8


@handles(DynamicInt8)
class DynamicBuilder(VariantBuilder):
    recipe: DynamicInt8

    def prepare(self) -> None:
        self.isolated = isolate_outputs(self.proto, [s.output for s in self.info.states])
        self.gemms_rewritten = gemm_to_matmul(self.proto)
        self.source = self.workdir / f"{self.info.kind}.dynamic.in.onnx"
        onnx.save(self.proto, str(self.source))

    def details(self) -> dict[str, Any]:
        return {
            "format": "dynamic (DynamicQuantizeLinear + MatMulInteger)",
            "weight_type": "uint8 (asymmetric)" if self.recipe.weight_type == "uint8" else "int8 (symmetric)",
            "activation_type": "uint8 (dynamic, per tensor)",
            "per_channel": self.recipe.per_channel,
            "reduce_range": self.recipe.reduce_range,
            "bias": "float (Add after MatMulInteger)",
            "gemm_rewritten_as_matmul": self.gemms_rewritten,
        }

    def convert(self, keep_float: list[str]) -> onnx.ModelProto:
        out = self.workdir / f"{self.info.kind}.dynamic.out.onnx"
        todo = [c for c in self.candidates if c not in keep_float]
        quantize_dynamic(
            str(self.source),
            str(out),
            op_types_to_quantize=list(self.op_types),
            per_channel=self.recipe.per_channel,
            reduce_range=self.recipe.reduce_range,
            weight_type=QuantType.QUInt8 if self.recipe.weight_type == "uint8" else QuantType.QInt8,
            nodes_to_quantize=todo or None,
            nodes_to_exclude=self.excluded(keep_float),
            extra_options={"WeightSymmetric": self.recipe.weight_type == "int8"},
        )
        return onnx.load(str(out))
