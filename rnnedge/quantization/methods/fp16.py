"""Fp16: weights and activations float16 with ONNX Runtime's converter (convert_float_to_float16).

With `keep_io_types` (the default) the graph's inputs and outputs, the recurrent state included, stay
float32 (Casts at the boundary), so the variant is a drop-in for the fp32 graph. Without it the state
is float16 at the I/O too, and the variant's metadata declares the float16 state dtypes.
Ops in ONNX Runtime's default block list (e.g. CumSum, Range) and the recipe's `op_block_list` stay fp32.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import onnx
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from rnnedge.graphmeta import StateInfo
from rnnedge.quantization.builder import VariantBuilder, handles
from rnnedge.quantization.recipes import Fp16


@handles(Fp16)
class Fp16Builder(VariantBuilder):
    recipe: Fp16

    @property
    def blocked_ops(self) -> list[str]:
        return sorted(set(DEFAULT_OP_BLOCK_LIST) | set(self.recipe.op_block_list))

    def details(self) -> dict[str, Any]:
        return {
            "format": "float16",
            "keep_io_types": self.recipe.keep_io_types,
            "io_dtype": "float32" if self.recipe.keep_io_types else "float16",
            "op_block_list": self.blocked_ops,
        }

    @property
    def changes_io_dtype(self) -> bool:
        return not self.recipe.keep_io_types

    def variant_states(self) -> tuple[StateInfo, ...]:
        if self.recipe.keep_io_types:
            return self.info.states
        return tuple(dataclasses.replace(s, dtype="float16") if s.dtype == "float32" else s for s in self.info.states)

    def convert(self, keep_float: list[str]) -> onnx.ModelProto:
        model = onnx.ModelProto.FromString(self.proto.SerializeToString())
        converted: onnx.ModelProto = convert_float_to_float16(
            model,
            keep_io_types=self.recipe.keep_io_types,
            op_block_list=self.blocked_ops,
            node_block_list=list(keep_float),
        )
        return converted
