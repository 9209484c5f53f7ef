"""Graph forms every ONNX runtime takes as they are (OpenVINO, tract, ONNX Runtime): two edits of a written graph.

1. The doubling scan's shift (`rnnedge/models/scan.py::_shift`) traces to
   `Concat([ConstantOfShape(Shape(x[:, :s])), x[:, :-s]], axis=1)`. ONNX clamps Slice bounds to [0, T], so
   with T < s the head is T long and the tail empty; tract evaluates the bounds on its symbolic T without
   clamping, and `T - s` wraps negative (`Invalid range 0..18446744073709551601`). The same value is
   `Pad(x, s fill steps before t = 0)[:, :-s]`: its Slice end is (T + s) - s = T, never out of range, for
   any T. The Pad's fill block is s long instead of min(s, T) (at most 2^levels steps in all passes).
   Aaren's scan shifts its running max by its own first values, `Concat([m[:, :s], m[:, :-s]])`, whose
   tail has the same `T - s` end, and its head's end s is past T when T < s (tract does not clamp that
   either); it becomes `Concat([Pad(m, s after)[:, :s], m])[:, :T]`, the end T read from Shape(m): for
   T >= s that is m[:s] then m[:T-s], for T < s it is m, as before, and every bound is in range.
3. (listed here, done first) A `Mod(a, b)` whose `a` is broadcast gets `a + (b - b)` as its first input,
   the same values at the output's shape: tract 0.23 computes `b mod a` when only `a` is broadcast
   (`Mod([[7]], [6, 628])` gave `[[6, 5]]`), and the transformer's rotary angle `pos mod periods` then
   divides by the zero start position, a Rust panic that aborts the process. A scalar Mod (shape
   arithmetic: the window padding `(-T) mod W`) tract folds with Rust's `%`, whose sign is the
   dividend's (-3, not W - 3): it is taken as `((a mod b) + b) mod b`, the same value under both rules.
2. `value_info` is dropped: the tracer and onnxsim annotate hundreds of intermediate values with the
   symbolic `batch`/`time` dims, which contradict a fixed shape a runtime is given (tract: `Impossible to
   unify Sym(batch) with Val(1)`). Every runtime infers these shapes itself.

`check_metadata` is the exporter's last check on every graph it writes (step, parallel, mobile/, qnn-htp/):
the metadata's states layout, fixed batch and ids dtype are what the graph's inputs and outputs declare
(graphio.io_mismatches, strict).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from rnnedge.errors import GraphError
from rnnedge.exporter.graphedit import Editor, attr
from rnnedge.graphio import Declared, io_mismatches
from rnnedge.graphmeta import parse_metadata


def _prefix_slice(ed: Editor, producers: dict[str, onnx.NodeProto], value: str) -> tuple[str, int, int] | None:
    """(data, end, axis) when `value` is `data[..., :end]` along one axis with constant bounds and step 1."""
    node = producers.get(value)
    if node is None or node.op_type != "Slice" or len(node.input) < 4:
        return None
    bounds = [ed.consts.get(name) for name in node.input[1:]]
    if any(b is None or b.size != 1 for b in bounds):
        return None
    start, end, axis, *step = (int(b.item()) for b in bounds if b is not None)
    if start != 0 or step not in ([], [1]):
        return None
    return node.input[0], end, axis


def _shift_of(
    ed: Editor, producers: dict[str, onnx.NodeProto], node: onnx.NodeProto
) -> tuple[str, int, int, float] | None:
    """(x, s, axis, fill) when `node` is the traced `_shift(x, s, fill)` along a non-negative axis."""
    if node.op_type != "Concat" or len(node.input) != 2:
        return None
    tail = _prefix_slice(ed, producers, node.input[1])
    fill = producers.get(node.input[0])
    if tail is None or fill is None or fill.op_type != "ConstantOfShape" or not fill.input:
        return None
    shape = producers.get(fill.input[0])
    head = _prefix_slice(ed, producers, shape.input[0]) if shape is not None and shape.op_type == "Shape" else None
    x, end, axis = tail
    if shape is None or head is None or attr(shape, "start") is not None or attr(shape, "end") is not None:
        return None
    if end >= 0 or axis < 0 or head != (x, -end, axis) or attr(node, "axis") != axis:
        return None
    value = attr(fill, "value")
    fill_value = float(numpy_helper.to_array(value).reshape(-1)[0]) if value is not None else 0.0
    if value is not None and numpy_helper.to_array(value).dtype != np.float32:
        return None
    return x, -end, axis, fill_value


def _self_shift_of(
    ed: Editor, producers: dict[str, onnx.NodeProto], node: onnx.NodeProto
) -> tuple[str, int, int] | None:
    """(x, axis, s) when `node` is Concat([x[..., :s], x[..., :-s]]) along a non-negative axis (aaren's m_back)."""
    if node.op_type != "Concat" or len(node.input) != 2:
        return None
    head, tail = (_prefix_slice(ed, producers, v) for v in node.input)
    if head is None or tail is None or head[0] != tail[0] or head[2] != tail[2] or attr(node, "axis") != head[2]:
        return None
    if head[1] <= 0 or tail[1] != -head[1] or head[2] < 0:
        return None
    return head[0], head[2], head[1]


def _shape(model: onnx.ModelProto, value: str) -> list[int | str] | None:
    """The shape of `value` from ONNX shape inference (symbolic dims by name; '?' unknown), or None."""
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        if info.name == value and info.type.tensor_type.HasField("shape"):
            dims = info.type.tensor_type.shape.dim
            return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return None


def _lifted(producers: dict[str, onnx.NodeProto], node: onnx.NodeProto) -> bool:
    """Whether Mod `node` already reads `(a mod b) + b` (this rewrite's own form)."""
    lift = producers.get(node.input[0])
    if lift is None or lift.op_type != "Add":
        return False
    first = producers.get(lift.input[0])
    return first is not None and first.op_type == "Mod" and lift.input[1] == first.input[1] == node.input[1]


def tract_safe_mods(model: onnx.ModelProto, inferred: onnx.ModelProto) -> int:
    """Each Mod whose dividend is not already the output's shape reads `a + (b - b)` instead, and a
    scalar dividend (shape arithmetic) is taken as `((a mod b) + b) mod b` (see 3. above); returns how
    many Mods changed."""
    ed = Editor(model, "portable_mod")
    producers = {v: n for n in model.graph.node for v in n.output}
    count = 0
    for node in model.graph.node:
        if node.op_type == "Mod" and _lifted(producers, node):
            ed.keep(node)  # already lifted (a second pass, after onnxsim)
            continue
        if node.op_type != "Mod":
            ed.keep(node)
            continue
        a, out = _shape(inferred, node.input[0]), _shape(inferred, node.output[0])
        same = a is not None and a == out and "?" not in a
        if same and a != []:
            ed.keep(node)
            continue
        dividend, divisor = node.input[0], node.input[1]
        if not same:
            zero = ed.add1("Sub", [divisor, divisor], "mod_zero")  # b's shape and dtype, all 0
            dividend = ed.add1("Add", [dividend, zero], "mod_dividend")
        if a == []:  # tract folds a scalar's Mod as Rust's `%` (sign of the dividend): lift it into [0, b)
            first = ed.add1("Mod", [dividend, divisor], "mod_first", fmod=attr(node, "fmod", 0))
            dividend = ed.add1("Add", [first, divisor], "mod_lifted")
        ed.keep(node, [dividend, divisor])
        count += 1
    ed.finish({})
    return count


def _rank(model: onnx.ModelProto, value: str) -> int | None:
    """The rank of `value` from ONNX shape inference, or None when it is not known."""
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        if info.name == value and info.type.tensor_type.HasField("shape"):
            return len(info.type.tensor_type.shape.dim)
    return None


def portable(model: onnx.ModelProto) -> int:
    """Rewrite every scan shift as Pad + Slice (aaren's self-shift as Concat + Slice to T) and drop
    `value_info`, in place; returns how many shifts.

    The rewritten graph computes the same values (bit for bit in ONNX Runtime: the same copies and
    fills); a graph without shifts (every step graph) only loses its `value_info`.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    tract_safe_mods(model, inferred)
    ed = Editor(model, "portable")
    producers = {v: n for n in model.graph.node for v in n.output}
    count = 0
    for node in model.graph.node:
        own = _self_shift_of(ed, producers, node)
        own_rank = _rank(inferred, own[0]) if own is not None else None
        if own is not None and own_rank is not None and own[1] < own_rank:
            x, axis, steps = own
            pads = [0] * (2 * own_rank)
            pads[own_rank + axis] = steps  # `steps` zeros after the end of `axis`: x[:, :s] is in range
            tail_padded = ed.add1("Pad", [x, ed.const(pads, np.int64), ed.const(0.0, np.float32)], "self_shift_pad")
            axes = ed.const([axis], np.int64)
            head = ed.add1("Slice", [tail_padded, ed.const([0], np.int64), ed.const([steps], np.int64), axes])
            both = ed.add1("Concat", [head, x], "self_shift", axis=axis)  # (.., s + T, ..)
            length = ed.add1("Shape", [x], "self_shift_len", start=axis, end=axis + 1)  # [T]
            ed.nodes.append(
                onnx.helper.make_node(
                    "Slice", [both, ed.const([0], np.int64), length, axes], list(node.output), name=node.name
                )
            )
            count += 1
            continue
        shift = _shift_of(ed, producers, node)
        rank = _rank(inferred, shift[0]) if shift is not None else None
        if shift is None or rank is None or shift[2] >= rank:
            ed.keep(node)
            continue
        x, steps, axis, fill = shift
        pads = [0] * (2 * rank)
        pads[axis] = steps  # `steps` fill values before position 0 of `axis`
        padded = ed.add1("Pad", [x, ed.const(pads, np.int64), ed.const(fill, np.float32)], "shift_pad", mode="constant")
        bounds = [ed.const([0], np.int64), ed.const([-steps], np.int64), ed.const([axis], np.int64)]
        ed.nodes.append(onnx.helper.make_node("Slice", [padded, *bounds], list(node.output), name=node.name))
        count += 1
    ed.finish({})
    return count


def declared_io(model: onnx.ModelProto) -> Declared:
    """Each graph input (initializers excluded) and output: (NumPy dtype name, shape with symbolic dims named)."""
    inits = {i.name for i in model.graph.initializer}
    out = {}
    for value in [*(v for v in model.graph.input if v.name not in inits), *model.graph.output]:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
        out[value.name] = (np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name, dims)
    return out


def check_metadata(model: onnx.ModelProto, what: str) -> None:
    """GraphError unless the graph's metadata tells the truth about its I/O shapes, batch and ids dtype."""
    info = parse_metadata({p.key: p.value for p in model.metadata_props}, source=what)
    problems = io_mismatches(info, declared_io(model), strict=True)
    if problems:
        raise GraphError(f"the {what} graph's metadata contradicts the graph: {'; '.join(problems[:3])}")
