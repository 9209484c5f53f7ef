"""Rewrites that make a lean step graph run whole on Qualcomm's HTP (Hexagon NPU) through the QNN EP.

What the HTP takes and refuses (measured with onnxruntime-qnn 2.7.0's simulator, reference.md):
- `Erf` is refused by the QNN EP: exact GELU x·(1 + erf(x/√2))/2 becomes the opset-20 `Gelu` op
  (same function, one node; the graph moves to opset 20 with onnx's version converter);
- a quantized `Pow` whose base is a broadcast scalar constant is computed wrongly (`Pow(2, x)` on 8
  values gave `[0.25, 4, 4, 4, 0, 0, 0, 0]`) and crashes graphExecute downstream: `Pow(c, y)`
  becomes `Exp(y · ln c)`;
- every shape is fixed (batch N, default 1): the HTP compiles one static graph.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from rnnedge.exporter.graphedit import Editor, opset_of
from rnnedge.exporter.mobile_ops import Producers, _near, _rewrite, erf_gelu_input

GELU_OPSET = 20


class HtpGraphError(Exception):
    """The graph has a construct the HTP rewrite cannot express."""


def gelu_ops(model: onnx.ModelProto) -> int:
    """Exact GELU written with Erf -> one opset-20 `Gelu` node (the traced trailing ·0.5 folded in).

    Mul(x, Add(Erf(x/√2), 1)) followed by Mul(·, 0.5) becomes Gelu(x); a lone 2·GELU becomes
    Mul(Gelu(x), 2). The model's opset must already be >= 20."""
    producer_of = {v: n for n in model.graph.node for v in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for v in n.input:
            consumers.setdefault(v, []).append(n)
    twice: dict[str, str] = {}  # output of a 2·GELU Mul -> x

    def fn(ed: Editor, node: onnx.NodeProto, producer: Producers) -> bool:
        x = erf_gelu_input(ed, node, producer_of)
        if x is not None:
            users = consumers.get(node.output[0], [])
            half = users[0] if len(users) == 1 and users[0].op_type == "Mul" else None
            if half is not None and any(_near(ed.consts.get(v), 0.5) for v in half.input):
                twice[node.output[0]] = x
                return True  # dropped: the ·0.5 Mul below writes Gelu(x)
            ed.add1("Mul", [ed.add1("Gelu", [x]), ed.const(2.0)])
            ed.nodes[-1].output[0] = node.output[0]
            return True
        if node.op_type == "Mul" and any(v in twice for v in node.input):
            src = next(v for v in node.input if v in twice)
            ed.add1("Gelu", [twice[src]])
            ed.nodes[-1].output[0] = node.output[0]
            return True
        return False

    return _rewrite(model, "gelu", fn)


def exp_not_pow(model: onnx.ModelProto) -> int:
    """Pow(scalar constant c > 0, y) -> Exp(y · ln c): the HTP computes a broadcast scalar-base Pow wrongly."""

    def fn(ed: Editor, node: onnx.NodeProto, producer: Producers) -> bool:
        if node.op_type != "Pow":
            return False
        base = ed.consts.get(node.input[0])
        if base is None or base.size != 1 or not float(base.reshape(())) > 0:
            return False
        c = float(base.reshape(()))
        y = node.input[1] if _near(np.asarray(c), math.e) else ed.add1("Mul", [node.input[1], ed.const(math.log(c))])
        ed.add1("Exp", [y])
        ed.nodes[-1].output[0] = node.output[0]
        return True

    return _rewrite(model, "exp", fn)


def to_opset(model: onnx.ModelProto, opset: int = GELU_OPSET) -> onnx.ModelProto:
    """The model at default-domain opset `opset` (onnx's version converter; metadata kept)."""
    if opset_of(model) >= opset:
        return model
    try:
        from onnx import version_converter

        converted = version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises RuntimeError/ConvertError for unsupported adapters
        raise HtpGraphError(f"cannot move the step graph to opset {opset}: {str(exc).splitlines()[0][:200]}") from exc
    return converted


def forbidden(model: onnx.ModelProto) -> list[str]:
    """Constructs left that the HTP refuses or computes wrongly: Erf, scalar-constant-base Pow."""
    consts = Editor(model, "check").consts
    bad = [f"Erf {n.name!r}" for n in model.graph.node if n.op_type == "Erf"]
    for n in model.graph.node:
        base = consts.get(n.input[0]) if n.op_type == "Pow" else None
        if base is not None and base.size == 1:
            bad.append(f"Pow with scalar base {n.name!r}")
    return bad


def to_htp_ops(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Apply every rewrite (shapes already fixed); returns the new model and each rewrite's count."""
    model = to_opset(model)
    counts = {"gelu": gelu_ops(model), "exp_not_pow": exp_not_pow(model)}
    bad = forbidden(model)
    if bad:
        raise HtpGraphError(f"the HTP graph still has {', '.join(bad[:4])}")
    return model, counts
