"""Rewrites that put a lean step graph inside the NNAPI and CoreML op sets (ONNX Runtime's mobile EPs).

ORT's mobile checker reads the op lists in onnxruntime/tools/mobile_helpers/*.md, one for NNAPI and
one for each CoreML format (MLProgram, and NeuralNetwork, the EP's default). Their intersection has
Add/Sub/Mul/Div/Pow/Sqrt, Relu/Sigmoid/Tanh/Clip, MatMul/Gemm, Reshape/Slice/Split/Concat and little
else: no LayerNormalization, Erf, Gelu, Softplus, Exp, Log, Neg, Abs, Max, Min or ReduceMean, and
MLProgram has no Gather. Each rewrite below replaces one construct by ops inside all three, with the
same function:

- LayerNormalization -> mean and variance as MatMul with a constant 1/D column, Sqrt, Div, Mul, Add;
- exact GELU's x·(1 + erf(x/√2)) -> x + |x|·(1 − P(t)·e^(−x²/2)), t = 1/(1 + p|x|/√2), P the
  Abramowitz–Stegun 7.1.26 polynomial (|erf error| <= 1.5e-7), using that erf is odd;
- σ(softplus(P) − softplus(Q)) (minLSTM's normalised gates, Appendix B) -> σ(−Q) / (σ(−P) + σ(−Q)),
  the paper's §3.2 form f/(f + i); both logits are clipped to ±80 so fp32 never forms 0/0 (σ(−80) is
  still a normal float); outside ±80 on both gates at once the ratio differs from the log form;
- σ(−x) -> 1 − σ(x) everywhere; then single ops: Neg -> Mul by −1, Abs -> 2·Relu(x) − x,
  Max(a, b) -> b + Relu(a − b), Min likewise, Exp -> Pow(e, x); g's max(x + 0.5, σ(x)) (scan.g) ->
  Relu(x) + σ(x − Relu(x)), exact in floating point;
- the token ids' dtype is the target's choice (`set_ids_dtype`; mobile.py: int32 by default, since
  NNAPI's Gather takes int32 indices from a graph input; int64 for a converter that needs it, onnx2tf).
The embedding Gather is the graph's first node, so an EP without Gather (MLProgram) leaves only that
one node outside its partition.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto

from rnnedge.exporter.graphedit import Editor, attr, constants_to_initializers, live_nodes
from rnnedge.exporter.peephole import one_minus_sigmoid
from rnnedge.graphmeta import IDS_DTYPES, INPUT_IDS

# Abramowitz & Stegun 7.1.26: erf(z) ≈ 1 − (a1 t + ... + a5 t⁵) e^(−z²), t = 1/(1 + p z), z >= 0.
AS_P = 0.3275911
AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
GATE_CLIP = 80.0


class MobileError(Exception):
    """The graph has a construct the mobile rewrite cannot express."""


def _near(value: np.ndarray | None, want: float) -> bool:
    return value is not None and value.size == 1 and abs(float(value.reshape(())) - want) < 1e-6 * max(1.0, want)


Producers = dict[str, onnx.NodeProto]


def _rewrite(model: onnx.ModelProto, tag: str, fn: Callable[[Editor, onnx.NodeProto, Producers], bool]) -> int:
    """Run `fn(editor, node, producers)` over every node: True means it appended the node's replacement
    (whose last node writes the node's output), False keeps the node. Returns how many were replaced."""
    ed = Editor(model, tag)
    producer = {v: n for n in model.graph.node for v in n.output}
    count = 0
    for node in list(model.graph.node):
        if fn(ed, node, producer):
            count += 1
        else:
            ed.keep(node)
    ed.finish({})
    return count


def decompose_layer_norm(model: onnx.ModelProto) -> int:
    """LayerNormalization over the last axis -> mean and variance as MatMul with a constant 1/D column."""
    consts_shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}

    def fn(ed: Editor, node: onnx.NodeProto, producer: Producers) -> bool:
        scale_shape = consts_shapes.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type != "LayerNormalization" or attr(node, "axis", -1) != -1 or scale_shape is None:
            return False
        if len(node.output) > 1 or len(scale_shape) != 1:
            return False
        x, scale = node.input[0], node.input[1]
        column = ed.const(np.full((scale_shape[0], 1), 1.0 / scale_shape[0], dtype=np.float32))  # (D, 1)
        centred = ed.add1("Sub", [x, ed.add1("MatMul", [x, column], "mean")])  # (B, D) − (B, 1)
        var = ed.add1("MatMul", [ed.add1("Mul", [centred, centred]), column], "var")  # (B, 1)
        std = ed.add1("Sqrt", [ed.add1("Add", [var, ed.const(attr(node, "epsilon", 1e-5))])])
        y = ed.add1("Mul", [ed.add1("Div", [centred, std]), scale])
        if len(node.input) > 2 and node.input[2]:
            ed.add1("Add", [y, node.input[2]])
        ed.nodes[-1].output[0] = node.output[0]
        return True

    return _rewrite(model, "ln", fn)


def _twice_gelu(ed: Editor, x: str, out: str) -> None:
    """out = x·(1 + erf(x/√2)) = 2·GELU(x), without Erf/Abs/Neg (see the module docstring)."""
    ax = ed.add1("Abs", [x])
    den = ed.add1("Add", [ed.add1("Mul", [ax, ed.const(AS_P / math.sqrt(2.0))]), ed.const(1.0)])
    t = ed.add1("Div", [ed.const(1.0), den], "t")
    poly = ed.add1("Mul", [t, ed.const(AS_A[4])])
    for coef in reversed(AS_A[:4]):
        poly = ed.add1("Mul", [ed.add1("Add", [poly, ed.const(coef)]), t])
    gauss = ed.add1("Exp", [ed.add1("Mul", [ed.add1("Mul", [x, x]), ed.const(-0.5)])])
    erf_abs = ed.add1("Sub", [ed.const(1.0), ed.add1("Mul", [poly, gauss])])
    ed.add1("Add", [x, ed.add1("Mul", [ax, erf_abs])])
    ed.nodes[-1].output[0] = out


def erf_gelu_input(ed: Editor, node: onnx.NodeProto, producer: Producers) -> str | None:
    """x when `node` is Mul(x, Add(Erf(x/√2), 1)) = 2·GELU(x) (as torch traces it), else None."""
    if node.op_type != "Mul":
        return None
    for x, other in (node.input, node.input[::-1]):
        add = producer.get(other)
        if add is None or add.op_type != "Add":
            continue
        for e, one in (add.input, add.input[::-1]):
            erf = producer.get(e)
            if erf is None or erf.op_type != "Erf" or not _near(ed.consts.get(one), 1.0):
                continue
            scale = producer.get(erf.input[0])
            if scale is None or scale.input[0] != x:
                continue
            c = ed.consts.get(scale.input[1])
            if (scale.op_type == "Div" and _near(c, math.sqrt(2.0))) or (
                scale.op_type == "Mul" and _near(c, 1 / math.sqrt(2.0))
            ):
                return str(x)
    return None


def decompose_gelu(model: onnx.ModelProto) -> int:
    """Exact GELU, as traced (Mul(x, Add(Erf(Div(x, √2)), 1))) or as the opset-20 Gelu op, without Erf."""

    def fn(ed: Editor, node: onnx.NodeProto, producer: Producers) -> bool:
        if node.op_type == "Gelu" and attr(node, "approximate", b"none") in (b"none", "none"):
            twice = ed.fresh("gelu2")
            _twice_gelu(ed, node.input[0], twice)
            ed.add1("Mul", [twice, ed.const(0.5)])
            ed.nodes[-1].output[0] = node.output[0]
            return True
        x = erf_gelu_input(ed, node, producer)
        if x is None:
            return False
        _twice_gelu(ed, x, node.output[0])
        return True

    return _rewrite(model, "gelu", fn)


def _sigmoid_of_negative(ed: Editor, v: str, producer: Producers) -> str:
    """σ(−v) with the argument clipped to ±GATE_CLIP (Neg folded away when v = Neg(y))."""
    neg = producer.get(v)
    arg = neg.input[0] if neg is not None and neg.op_type == "Neg" else ed.add1("Mul", [v, ed.const(-1.0)])
    return ed.add1("Sigmoid", [ed.add1("Clip", [arg, ed.const(-GATE_CLIP), ed.const(GATE_CLIP)])])


def normalised_gates(model: onnx.ModelProto) -> int:
    """σ(softplus(P) − softplus(Q)) -> σ(−Q) / (σ(−P) + σ(−Q)) (no Softplus, no Neg)."""

    def fn(ed: Editor, node: onnx.NodeProto, producer: Producers) -> bool:
        sub = producer.get(node.input[0]) if node.op_type == "Sigmoid" else None
        if sub is None or sub.op_type != "Sub":
            return False
        soft = [producer.get(v) for v in sub.input]
        if any(s is None or s.op_type != "Softplus" for s in soft):
            return False
        s_p = _sigmoid_of_negative(ed, soft[0].input[0], producer)  # type: ignore[union-attr]
        s_q = _sigmoid_of_negative(ed, soft[1].input[0], producer)  # type: ignore[union-attr]
        ed.add1("Div", [s_q, ed.add1("Add", [s_p, s_q])])
        ed.nodes[-1].output[0] = node.output[0]
        return True

    return _rewrite(model, "gates", fn)


def _g_argument(ed: Editor, ins: list[str], producer: Producers) -> str | None:
    """x when `ins` are (x + 0.5, σ(x)) in either order: Max of them is the paper's g (scan.g)."""
    if len(ins) != 2:
        return None
    for a, b in (ins, ins[::-1]):
        add, sig = producer.get(a), producer.get(b)
        if add is None or sig is None or add.op_type != "Add" or sig.op_type != "Sigmoid":
            continue
        x = sig.input[0]
        if x in add.input and _near(ed.consts.get(next(v for v in add.input if v != x), None), 0.5):
            return x
    return None


def _elementary(ed: Editor, node: onnx.NodeProto, producer: Producers) -> bool:
    """One op outside the common set -> ops inside it, exactly (up to rounding)."""
    op, ins = node.op_type, list(node.input)
    if op == "Neg":
        ed.add1("Mul", [ins[0], ed.const(-1.0)])
    elif op == "Abs":  # |x| = 2·relu(x) − x (exact in floating point)
        ed.add1("Sub", [ed.add1("Mul", [ed.add1("Relu", [ins[0]]), ed.const(2.0)]), ins[0]])
    elif op == "Max" and (x := _g_argument(ed, ins, producer)) is not None:  # g(x) = relu(x) + σ(x − relu(x))
        relu = ed.add1("Relu", [x])
        ed.add1("Add", [relu, ed.add1("Sigmoid", [ed.add1("Sub", [x, relu])])])
    elif op == "Max" and len(ins) == 2:  # max(a, b) = b + relu(a − b)
        ed.add1("Add", [ins[1], ed.add1("Relu", [ed.add1("Sub", [ins[0], ins[1]])])])
    elif op == "Min" and len(ins) == 2:  # min(a, b) = a − relu(a − b)
        ed.add1("Sub", [ins[0], ed.add1("Relu", [ed.add1("Sub", [ins[0], ins[1]])])])
    elif op == "Exp":  # e^x as Pow(e, x)
        ed.add1("Pow", [ed.const(math.e), ins[0]])
    else:
        return False
    ed.nodes[-1].output[0] = node.output[0]
    return True


def elementary_ops(model: onnx.ModelProto) -> int:
    """Neg, Abs, Max, Min and Exp -> Mul / Relu / Sub / Add / Pow (in every mobile EP's set)."""
    return _rewrite(model, "elem", _elementary)


def empty_concat_inputs(model: onnx.ModelProto) -> int:
    """With every shape fixed: Concat inputs of size 0 go (a scan's x[:, 1:] at T = 1), and a Concat
    left with one input becomes its input. Returns how many Concats changed."""
    inferred = onnx.shape_inference.infer_shapes(model)
    empty = {
        v.name
        for v in inferred.graph.value_info
        if any(d.HasField("dim_value") and d.dim_value == 0 for d in v.type.tensor_type.shape.dim)
    }
    outputs = {o.name for o in model.graph.output}
    rename: dict[str, str] = {}
    kept, count = [], 0
    for node in model.graph.node:
        node_inputs = [rename.get(v, v) for v in node.input]
        del node.input[:]
        node.input.extend(node_inputs)
        full = [v for v in node.input if v not in empty]
        if node.op_type != "Concat" or len(full) == len(node.input) or not full:
            kept.append(node)
            continue
        count += 1
        if len(full) == 1 and node.output[0] not in outputs:
            rename[node.output[0]] = full[0]
            continue
        del node.input[:]
        node.input.extend(full)
        kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(live_nodes(kept, outputs))
    return count


def set_ids_dtype(model: onnx.ModelProto, dtype: str) -> int:
    """The token ids input becomes `dtype` ('int64' | 'int32'), in place. Gather takes either as its
    indices and Shape reads no values; any other reader gets a Cast back to int64 (returned: how many)."""
    if dtype not in IDS_DTYPES:
        raise MobileError(f"ids dtype {dtype!r} is not one of {', '.join(IDS_DTYPES)}")
    graph = model.graph
    value = next((v for v in graph.input if v.name == INPUT_IDS), None)
    if value is None:
        raise MobileError(f"the graph has no {INPUT_IDS} input")
    elem = TensorProto.INT32 if dtype == "int32" else TensorProto.INT64
    if value.type.tensor_type.elem_type == elem:
        return 0
    value.type.tensor_type.elem_type = elem
    if dtype == "int64":  # back from int32: the readers were already fine with int32
        return 0
    others = [
        n
        for n in graph.node
        if INPUT_IDS in n.input
        and n.op_type != "Shape"
        and not (n.op_type == "Gather" and list(n.input).index(INPUT_IDS) == 1)
    ]
    if others:
        wide = f"{INPUT_IDS}_int64"
        cast = onnx.helper.make_node("Cast", [INPUT_IDS], [wide], name="ids_to_int64", to=TensorProto.INT64)
        for node in others:
            node.input[:] = [wide if v == INPUT_IDS else v for v in node.input]
        graph.node.insert(0, cast)
    return len(others)


def fix_batch(model: onnx.ModelProto, batch: int = 1) -> None:
    """Every symbolic dim of the graph's inputs and outputs becomes `batch` (inner shapes are dropped,
    to be inferred again)."""
    for value in [*model.graph.input, *model.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = batch
    del model.graph.value_info[:]


def to_mobile_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Apply every rewrite in place (shapes already fixed: fix_batch + onnxsim); returns how many
    constructs each one replaced."""
    counts = {
        "empty_concat_inputs": empty_concat_inputs(model),
        "layer_norm": decompose_layer_norm(model),
        "gelu": decompose_gelu(model),
        "one_minus_sigmoid": one_minus_sigmoid(model, only_shared=False),
        "normalised_gates": normalised_gates(model),
        "elementary": elementary_ops(model),
    }
    constants_to_initializers(model)
    return counts
