"""Static TensorRT check: which ops/attributes of an ONNX graph TensorRT 10's ONNX parser would refuse.

The rules come from TensorRT 10's ONNX-parser operator support list (CumSum with a constant axis,
Loop without dynamic scan outputs, LSTM with input_forget = 0 and layout = 0, QDQ with zero point 0;
no DynamicQuantizeLinear / MatMulInteger); they are a static walk of the graph, not a TensorRT run
(TensorRT cannot be installed on our CI machines).
`check_tensorrt(model_or_path)` works on any ONNX file, int8 graphs included: [] means no problem found.
Torch-free (onnx + numpy): the exporter and rnnedge.quantization both import it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import onnx
from onnx import numpy_helper

from rnnedge.errors import GraphError

# Ops the TensorRT 10 ONNX parser has no importer for (the ones our pipeline can produce, plus
# ONNX Runtime's contrib int8 ops that quantize_dynamic emits).
UNSUPPORTED = {
    "DynamicQuantizeLinear": "TensorRT has no dynamic (runtime-computed) quantization; use symmetric QDQ",
    "MatMulInteger": "integer MatMul is unsupported; use QuantizeLinear/DequantizeLinear around MatMul",
    "ConvInteger": "integer Conv is unsupported; use QDQ",
    "QLinearMatMul": "QOperator format is unsupported; use QDQ",
    "QLinearConv": "QOperator format is unsupported; use QDQ",
    "DynamicQuantizeLSTM": "ONNX Runtime contrib op, not ONNX",
    "DynamicQuantizeMatMul": "ONNX Runtime contrib op, not ONNX",
    "MatMulIntegerToFloat": "ONNX Runtime contrib op, not ONNX",
    "StringNormalizer": "string tensors are unsupported",
    "Unique": "data-dependent output shape",
    "NonZero": "data-dependent output shape (supported only in recent 10.x with restrictions)",
}
_ORT_DOMAINS = {"com.microsoft", "com.microsoft.nchwc", "ai.onnx.ml"}


def _load(model_or_path: onnx.ModelProto | str | os.PathLike[str]) -> onnx.ModelProto:
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    try:
        return onnx.load(os.fspath(model_or_path))
    except (OSError, onnx.onnx_cpp2py_export.checker.ValidationError, ValueError) as exc:
        raise GraphError(f"cannot read ONNX file {model_or_path}: {exc}") from exc
    except Exception as exc:  # protobuf DecodeError has no stable import path
        raise GraphError(f"{model_or_path} is not a valid ONNX file: {exc}") from exc


def _constants(graph: onnx.GraphProto) -> set[str]:
    names = {init.name for init in graph.initializer}
    names.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    return names


def _const_value(graph: onnx.GraphProto, name: str) -> object | None:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for n in graph.node:
        if n.op_type == "Constant" and name in n.output:
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
    return None


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _walk(graph: onnx.GraphProto, where: str) -> Iterable[str]:
    consts = _constants(graph)
    for node in graph.node:
        label = f"{node.op_type} '{node.name or '?'}'{where}"
        if node.domain and node.domain not in ("", "ai.onnx"):
            kind = "ONNX Runtime contrib" if node.domain in _ORT_DOMAINS else "custom"
            yield f"{label}: {kind} op in domain {node.domain!r} (TensorRT needs a plugin)"
        elif node.op_type in UNSUPPORTED:
            yield f"{label}: unsupported by TensorRT's ONNX parser ({UNSUPPORTED[node.op_type]})"
        if node.op_type == "CumSum" and len(node.input) > 1 and node.input[1] not in consts:
            yield f"{label}: CumSum axis must be a constant (initializer or Constant), got a computed tensor"
        if node.op_type == "LSTM":
            if _attr(node, "input_forget", 0) != 0:
                yield f"{label}: LSTM input_forget=1 is unsupported (needs 0)"
            if _attr(node, "layout", 0) != 0:
                yield f"{label}: LSTM layout=1 is unsupported (needs 0)"
        if node.op_type == "GRU" and _attr(node, "layout", 0) != 0:
            yield f"{label}: GRU layout=1 is unsupported (needs 0)"
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
            zp = _const_value(graph, node.input[2])
            if zp is None:
                yield f"{label}: zero point must be a constant"
            else:
                if getattr(zp, "size", 0) and bool((zp != 0).any()):  # type: ignore[attr-defined]
                    yield f"{label}: non-zero zero point (TensorRT supports symmetric quantization only)"
                if str(getattr(zp, "dtype", "")) in ("uint8", "uint16", "int16", "int32"):
                    yield f"{label}: {zp.dtype} zero point (TensorRT quantizes to signed int8/fp8/int4 only)"  # type: ignore[attr-defined]
        if node.op_type == "Loop":
            body = _attr(node, "body")
            n_carried = len(node.input) - 2
            if isinstance(body, onnx.GraphProto) and len(body.output) - 1 > n_carried:
                yield f"{label}: Loop with scan outputs of dynamic length is unsupported"
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _walk(a.g, f" in {node.op_type} '{node.name}'")


def check_tensorrt(model_or_path: onnx.ModelProto | str | os.PathLike[str]) -> list[str]:
    """Every op/attribute TensorRT 10's ONNX parser would refuse, one line each; [] = none found."""
    model = _load(model_or_path)
    problems = list(_walk(model.graph, ""))
    for dtype_input in [*model.graph.input, *model.graph.output]:
        if dtype_input.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE:
            problems.append(f"graph {dtype_input.name!r} is float64 (TensorRT has no FP64 I/O)")
    return problems
