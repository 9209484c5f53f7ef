"""The lean step graph: the T == 1 trace without its unit time axis, and fewer nodes per token.

A step graph is the model's T == 1 path traced with tensors of shape (batch, 1, ...). Every token
then pays for shape work that does nothing: Unsqueeze of the ids and of each state, Reshape to 2-D
around every Gemm and back, Slice/Concat/Gather of the scan's one time step. On the bundled model
that was 46 of the 108 nodes ONNX Runtime ran per token (26 Reshape, 9 Slice, 4 Unsqueeze, 4 Gather,
3 Concat). `lean_step` removes that axis:

1. Shapes come from running the graph (onnx.reference) at batch 2 and 3: a value of shape
   (batch, 1, ...) at both is "unit" and gets represented without its axis 1.
2. Each node is rewritten for its inputs' new ranks (rules below, one per op family): a Reshape or
   Unsqueeze that only added/removed the unit axis becomes an alias, Slice/Split/Concat/LayerNorm
   axes shift down by one, a Slice that selects nothing along axis 1 disappears with the Concat
   that appended it, a Gather of index 0/-1 along axis 1 becomes an alias. A node no rule covers
   gets its inputs' axis back through an Unsqueeze, so the pass is correct for any graph; graph
   inputs and outputs keep their shapes.
3. Peepholes (peephole.py): σ(−x) next to σ(x) becomes 1 − σ(x), the state update
   (1 − s)·h₀ + s·v becomes h₀ + s·(v − h₀), then common subexpressions merge.

The exporter verifies the result like any simplified graph (simplify.py) and keeps the plain
onnxsim graph when anything is off.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

from rnnedge.exporter.graphedit import Editor, attr, live_nodes
from rnnedge.exporter.peephole import (
    PeepholeError,
    eliminate_common_subexpressions,
    interpolations,
    one_minus_sigmoid,
)

ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where", "Equal", "Greater", "GreaterOrEqual", "Less",
    "LessOrEqual", "And", "Or", "Sigmoid", "Tanh", "Relu", "Neg", "Exp", "Log", "Softplus", "Erf", "Abs", "Sqrt",
    "Reciprocal", "Cast", "Gelu", "Clip", "LeakyRelu", "Elu", "Sin", "Cos", "Not", "Sign",
}  # fmt: skip
AXIS_OPS = {"LayerNormalization", "Softmax", "LogSoftmax"}  # one `axis` attribute; output shape = input shape


class LeanError(Exception):
    """The graph has a construct the pass cannot rewrite (the exporter then keeps the original)."""


Shapes = dict[str, tuple[int, ...]]


def probe_shapes(model: onnx.ModelProto, batch: int) -> Shapes:
    """Every value's shape when the graph runs at `batch` (zeros in; onnx's reference evaluator)."""
    feeds = {}
    for value in model.graph.input:
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in t.shape.dim]
        feeds[value.name] = np.zeros(dims, dtype=helper.tensor_dtype_to_np_dtype(t.elem_type))
    results = ReferenceEvaluator(model).run(None, feeds, intermediate=True)
    assert isinstance(results, dict)
    return {k: tuple(np.shape(v)) for k, v in results.items()}


class _Lowering:
    """State of the rank-lowering rewrite: `rep` maps each original value to what now stands for it,
    `low` holds the values represented without axis 1, `empty` those of size 0 along axis 1."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.ed = Editor(model, "lean")
        self.s2, self.s3 = probe_shapes(model, 2), probe_shapes(model, 3)
        self.rep: dict[str, str] = {}
        self.low: set[str] = set()
        self.empty: set[str] = set()
        self.rules: dict[str, Callable[[onnx.NodeProto], bool]] = {
            "Unsqueeze": self._unsqueeze,
            "Squeeze": self._squeeze,
            "Reshape": self._reshape,
            "Slice": self._slice,
            "Split": self._split,
            "Concat": self._concat,
            "Gather": self._gather,
            "MatMul": self._matmul,
            "Identity": self._identity,
        }

    # -- value helpers -------------------------------------------------------------------------
    def unit(self, v: str) -> bool:
        a, b = self.s2.get(v), self.s3.get(v)
        return a is not None and b is not None and len(a) >= 2 and a[0] == 2 and b[0] == 3 and a[1] == b[1] == 1

    def cur(self, v: str) -> str:
        return self.rep.get(v, v)

    def rank(self, v: str) -> int:
        return len(self.s2[v])

    def restored(self, v: str) -> str:
        """The value with its original shape (an Unsqueeze when it is represented lowered)."""
        if v in self.empty:
            raise LeanError(f"{v} is empty along the time axis and read by a node the pass cannot rewrite")
        if v not in self.low:
            return self.cur(v)
        return self.ed.add1("Unsqueeze", [self.cur(v), self.ed.const([1], np.int64)], "restore")

    def alias(self, out: str, src: str, lowered: bool) -> None:
        self.rep[out] = self.cur(src)
        if lowered:
            self.low.add(out)

    def axis(self, a: int, rank: int) -> int:
        return a + rank if a < 0 else a

    def const_ints(self, v: str) -> list[int] | None:
        value = self.ed.consts.get(v)
        return None if value is None else [int(x) for x in np.ravel(value)]

    # -- the pass -----------------------------------------------------------------------------
    def run(self) -> None:
        for node in list(self.ed.graph.node):
            if node.op_type == "Constant":
                self.ed.keep(node)
                continue
            touched = any(v in self.low or v in self.empty for v in node.input)
            handled = False
            if node.domain in ("", "ai.onnx") and (touched or node.op_type in ("Unsqueeze", "Reshape")):
                if node.op_type in self.rules:
                    handled = self.rules[node.op_type](node)
                elif node.op_type in ELEMENTWISE:
                    handled = self._elementwise(node)
                elif node.op_type in AXIS_OPS:
                    handled = self._axis_op(node)
            if not handled:
                self.ed.keep(node, [self.restored(v) if v else v for v in node.input])
        outputs = [o.name for o in self.ed.graph.output]
        for out in outputs:
            if out in self.low:
                self.rep[out] = self.restored(out)
        self.ed.finish(self.rep)

    # -- rules: return True when the node was rewritten ----------------------------------------
    def _identity(self, node: onnx.NodeProto) -> bool:
        self.alias(node.output[0], node.input[0], node.input[0] in self.low)
        return True

    def _elementwise(self, node: onnx.NodeProto) -> bool:
        out = node.output[0]
        if not self.unit(out):
            return False
        big = self.rank(out)
        new_inputs = []
        for v in node.input:
            if not v or v in self.low:
                new_inputs.append(self.cur(v) if v else v)
                continue
            r = self.rank(v)
            if r <= big - 2:  # broadcasting aligns from the right: axis 1 is not reached
                new_inputs.append(self.cur(v))
                continue
            value = self.ed.consts.get(v)
            if value is None or v in self.empty:
                return False
            new_inputs.append(self.ed.const(np.squeeze(value, axis=1 - (big - r)), value.dtype))
        self.ed.keep(node, new_inputs)
        self.low.add(out)
        return True

    def _axis_op(self, node: onnx.NodeProto) -> bool:
        x, out = node.input[0], node.output[0]
        if x not in self.low or not self.unit(out):
            return False
        a = self.axis(attr(node, "axis", -1), self.rank(x))
        if a <= 1:
            return False
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        for at in copy.attribute:
            if at.name == "axis":
                at.i = a - 1 if attr(node, "axis", -1) >= 0 else at.i
        self.ed.keep(copy, [self.cur(x), *(self.cur(v) for v in node.input[1:])])
        self.low.add(out)
        return True

    def _unsqueeze(self, node: onnx.NodeProto) -> bool:
        x, out = node.input[0], node.output[0]
        axes = self.const_ints(node.input[1]) if len(node.input) > 1 else None
        if x in self.low or x in self.empty or axes is None or not self.unit(out):
            return False
        if [self.axis(a, self.rank(out)) for a in axes] != [1]:
            return False
        self.alias(out, x, lowered=True)
        return True

    def _squeeze(self, node: onnx.NodeProto) -> bool:
        x = node.input[0]
        axes = self.const_ints(node.input[1]) if len(node.input) > 1 else None
        if x not in self.low or axes is None or [self.axis(a, self.rank(x)) for a in axes] != [1]:
            return False
        self.alias(node.output[0], x, lowered=False)
        return True

    def _target(self, out: str) -> list[int] | None:
        """A Reshape target for `out` (batch as -1), without axis 1 when `out` is unit."""
        a, b = self.s2[out], self.s3[out]
        varying = [i for i, (p, q) in enumerate(zip(a, b, strict=True)) if p != q]
        if len(varying) != 1 or 0 in a:
            return None
        target = [-1 if i == varying[0] else d for i, d in enumerate(a)]
        return target[:1] + target[2:] if self.unit(out) else target

    def _reshape(self, node: onnx.NodeProto) -> bool:
        x, out = node.input[0], node.output[0]
        target = self._target(out)
        if target is None or x in self.empty:
            return False
        x_shape = list(self.s2[x])
        if x in self.low:
            x_shape = x_shape[:1] + x_shape[2:]
        if [2 if d == -1 else d for d in target] == x_shape:
            self.alias(out, x, lowered=self.unit(out))
            return True
        self.ed.keep(node, [self.cur(x), self.ed.const(target, np.int64)])
        if self.unit(out):
            self.low.add(out)
        return True

    def _slice(self, node: onnx.NodeProto) -> bool:
        x, out = node.input[0], node.output[0]
        if x not in self.low:
            return False
        rank = self.rank(x)
        given = list(node.input[1:])
        parts = [self.const_ints(v) if v else None for v in given]
        if any(v and p is None for v, p in zip(given, parts, strict=True)):
            return False  # a start/end/axis/step that is not a constant
        starts, ends = parts[0] or [], parts[1] or []
        axes = parts[2] if len(parts) > 2 and parts[2] is not None else list(range(len(starts)))
        steps = parts[3] if len(parts) > 3 and parts[3] is not None else [1] * len(starts)
        if self.s2[out][1] == 0:
            self.empty.add(out)
            return True
        if not self.unit(out):
            return False
        kept = [(s, e, self.axis(a, rank), st) for s, e, a, st in zip(starts, ends, axes, steps, strict=True)]
        kept = [(s, e, a - 1 if a > 1 else a, st) for s, e, a, st in kept if a != 1]
        if not kept:
            self.alias(out, x, lowered=True)
            return True
        cols = list(zip(*kept, strict=True))
        self.ed.keep(node, [self.cur(x), *(self.ed.const(list(c), np.int64) for c in cols)])
        self.low.add(out)
        return True

    def _split(self, node: onnx.NodeProto) -> bool:
        x = node.input[0]
        a = self.axis(attr(node, "axis", 0), self.rank(x))
        if x not in self.low or a == 1 or not all(self.unit(o) for o in node.output):
            return False
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        del copy.attribute[:]
        copy.attribute.extend(at for at in node.attribute if at.name != "axis")
        copy.attribute.append(helper.make_attribute("axis", a - 1 if a > 1 else a))
        self.ed.keep(copy, [self.cur(x), *(self.cur(v) for v in node.input[1:])])
        self.low.update(node.output)
        return True

    def _concat(self, node: onnx.NodeProto) -> bool:
        out = node.output[0]
        a = self.axis(attr(node, "axis", 0), self.rank(out))
        full = [v for v in node.input if v not in self.empty]
        if len(full) < len(node.input) and a != 1:
            raise LeanError(f"{node.name}: concatenates a time-empty value along axis {a}")
        if a == 1 and len(full) == 1:
            self.alias(out, full[0], lowered=full[0] in self.low)
            return True
        if a == 1 or not self.unit(out) or not all(v in self.low for v in full):
            return False
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.attribute[0].i = a - 1 if a > 1 else a
        self.ed.keep(copy, [self.cur(v) for v in full])
        self.low.add(out)
        return True

    def _gather(self, node: onnx.NodeProto) -> bool:
        data, idx, out = node.input[0], node.input[1], node.output[0]
        a = attr(node, "axis", 0)
        index = self.ed.consts.get(idx)
        if data in self.low and index is not None and index.ndim == 0 and self.axis(a, self.rank(data)) == 1:
            if int(index) in (0, -1):
                self.alias(out, data, lowered=False)
                return True
            return False
        if data not in self.low and data not in self.empty and idx in self.low and a == 0 and self.unit(out):
            self.ed.keep(node, [self.cur(data), self.cur(idx)])
            self.low.add(out)
            return True
        return False

    def _matmul(self, node: onnx.NodeProto) -> bool:
        x, w, out = node.input[0], node.input[1], node.output[0]
        if x not in self.low or w in self.low or self.rank(w) != 2 or self.rank(x) < 3 or not self.unit(out):
            return False
        self.ed.keep(node, [self.cur(x), self.cur(w)])
        self.low.add(out)
        return True


def lean_step(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a (constant-folded) step graph without the unit time axis and with the peepholes
    applied; same inputs, outputs and function. Raises LeanError when a construct is not covered."""
    lean = onnx.ModelProto()
    lean.CopyFrom(model)
    _Lowering(lean).run()
    try:
        one_minus_sigmoid(lean)
        interpolations(lean)
        eliminate_common_subexpressions(lean)
    except PeepholeError as exc:
        raise LeanError(str(exc)) from exc
    graph = lean.graph
    kept = live_nodes(list(graph.node), [o.name for o in graph.output])
    del graph.node[:]
    graph.node.extend(kept)
    return lean
