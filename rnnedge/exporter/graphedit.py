"""Small ONNX graph-editing helpers shared by the step-graph passes (lean.py, mobile_ops.py).

A pass builds a new node list from the old one; `Editor` hands out fresh names, adds constant
initializers, and finishes the graph: renames aliased outputs, drops dead nodes and unused
initializers, clears stale shape annotations. Values are identified by name, as in ONNX.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


def const_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """name -> value of every initializer and Constant-node output."""
    out = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of a node attribute, or `default`."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def opset_of(model: onnx.ModelProto) -> int:
    """The model's default-domain opset."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


class Editor:
    """A node list under construction for `model`'s graph, with fresh names and new constants."""

    def __init__(self, model: onnx.ModelProto, tag: str) -> None:
        self.model = model
        self.graph = model.graph
        self.consts = const_values(model.graph)
        self.nodes: list[onnx.NodeProto] = []
        self._tag = tag
        self._count = 0
        self._taken = {v for n in self.graph.node for v in (*n.input, *n.output)}
        self._taken |= {i.name for i in self.graph.initializer} | {i.name for i in self.graph.input}
        self._taken |= {n.name for n in self.graph.node}  # node names too: a second pass must not repeat them

    def fresh(self, hint: str = "v") -> str:
        """A value name not used anywhere in the graph."""
        while True:
            self._count += 1
            name = f"/rnnedge_{self._tag}/{hint}_{self._count}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def const(self, value: np.ndarray | float | int | Sequence[int], dtype: Any = np.float32) -> str:
        """An initializer holding `value` (new name); returns the name."""
        arr = np.asarray(value, dtype=dtype)
        name = self.fresh("const")
        self.graph.initializer.append(numpy_helper.from_array(arr, name))
        self.consts[name] = arr
        return name

    def add(self, op: str, inputs: Sequence[str], hint: str | None = None, outputs: int = 1, **attrs: Any) -> list[str]:
        """Append a node; returns its output names (fresh unless the caller gives them)."""
        names = [self.fresh(hint or op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=self.fresh(op), **attrs))
        return names

    def add1(self, op: str, inputs: Sequence[str], hint: str | None = None, **attrs: Any) -> str:
        """Append a one-output node; returns its output name."""
        return self.add(op, inputs, hint, 1, **attrs)[0]

    def keep(self, node: onnx.NodeProto, inputs: Iterable[str] | None = None) -> None:
        """Append `node` (a copy with new inputs when given)."""
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        if inputs is not None:
            del copy.input[:]
            copy.input.extend(inputs)
        self.nodes.append(copy)

    def finish(self, rep: dict[str, str]) -> None:
        """Install the node list: each graph output `o` gets the value `rep.get(o, o)` (renamed or via
        Identity), dead nodes and unused initializers go, and old shape annotations are cleared."""
        inputs = {i.name for i in self.graph.input}
        outputs = [o.name for o in self.graph.output]
        producers = {v: n for n in self.nodes for v in n.output}
        for out in outputs:
            src = rep.get(out, out)
            if src == out:
                continue
            if src in producers and src not in inputs and src not in outputs:
                _rename(self.nodes, src, out)
                producers[out] = producers.pop(src)
            else:
                self.nodes.append(helper.make_node("Identity", [src], [out], name=self.fresh("Identity")))
        del self.graph.node[:]
        self.graph.node.extend(live_nodes(self.nodes, outputs))
        prune_initializers(self.graph)
        del self.graph.value_info[:]


def _rename(nodes: list[onnx.NodeProto], old: str, new: str) -> None:
    for node in nodes:
        for i, v in enumerate(node.input):
            if v == old:
                node.input[i] = new
        for i, v in enumerate(node.output):
            if v == old:
                node.output[i] = new


def live_nodes(nodes: Sequence[onnx.NodeProto], outputs: Iterable[str]) -> list[onnx.NodeProto]:
    """The nodes some graph output depends on, in their original order."""
    needed = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    return keep[::-1]


def prune_initializers(graph: onnx.GraphProto) -> None:
    """Drop initializers no node reads."""
    used = {i for n in graph.node for i in n.input}
    used |= {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def consumers(nodes: Sequence[onnx.NodeProto]) -> dict[str, list[onnx.NodeProto]]:
    """value name -> the nodes that read it."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for v in node.input:
            out.setdefault(v, []).append(node)
    return out


def constants_to_initializers(model: onnx.ModelProto) -> None:
    """Constant nodes (an op the mobile EPs do not list) become initializers."""
    graph = model.graph
    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
