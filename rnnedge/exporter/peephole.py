"""Peephole rewrites of a step graph: fewer nodes per token, the same function (up to rounding).

- `one_minus_sigmoid`: σ(−x) -> 1 − σ(x), sharing σ(x) where the graph computes it anyway (minGRU's
  1 − z and z both come from one Sigmoid; no Neg);
- `interpolations`: (1 − s)·u + s·v -> u + s·(v − u), the update h = a ⊙ h₀ + b of minGRU/minLSTM
  once a = 1 − s (3 nodes instead of 4);
- `eliminate_common_subexpressions`: nodes with the same op, inputs and attributes merge.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import helper

from rnnedge.exporter.graphedit import Editor, consumers


class PeepholeError(Exception):
    """The node list cannot be ordered (a cycle or an undefined value)."""


def one_minus_sigmoid(model: onnx.ModelProto, only_shared: bool = True) -> int:
    """σ(−x) -> 1 − σ(x). With `only_shared`, only where σ(x) is computed anyway (one Sigmoid and no
    Neg instead of Neg + two Sigmoids); otherwise everywhere (the mobile graph: no Neg). Returns the count."""
    graph = model.graph
    nodes = list(graph.node)
    producer = {v: n for n in nodes for v in n.output}
    sigmoid_of = {n.input[0]: n.output[0] for n in nodes if n.op_type == "Sigmoid"}
    ed = Editor(model, "sigm")
    one = None
    count = 0
    for node in nodes:
        neg = producer.get(node.input[0]) if node.op_type == "Sigmoid" and node.input else None
        if neg is None or neg.op_type != "Neg" or (only_shared and neg.input[0] not in sigmoid_of):
            ed.keep(node)
            continue
        x = neg.input[0]
        if x not in sigmoid_of:
            sigmoid_of[x] = ed.add1("Sigmoid", [x])
        one = one or ed.const(1.0)
        ed.nodes.append(helper.make_node("Sub", [one, sigmoid_of[x]], list(node.output), name=ed.fresh("Sub")))
        count += 1
    ed.nodes = _topological(ed.nodes, {i.name for i in graph.input} | {i.name for i in graph.initializer})
    ed.finish({})
    return count


def _topological(nodes: list[onnx.NodeProto], known: set[str]) -> list[onnx.NodeProto]:
    """Nodes ordered so every input is produced first (stable for already-ordered lists)."""
    ready, out, pending = set(known), [], list(nodes)
    while pending:
        rest = []
        for node in pending:
            if all(not v or v in ready for v in node.input):
                out.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise PeepholeError("graph has a cycle or reads an undefined value")
        pending = rest
    return out


def _is_one(ed: Editor, name: str) -> bool:
    value = ed.consts.get(name)
    return value is not None and value.size == 1 and float(value.reshape(())) == 1.0


def interpolations(model: onnx.ModelProto) -> int:
    """Add(Mul(Sub(1, s), u), Mul(s, v)) -> Add(u, Mul(s, Sub(v, u))) (operands in either order).
    Only where the two Muls feed nothing else; returns the count."""
    graph = model.graph
    nodes = list(graph.node)
    producer = {v: n for n in nodes for v in n.output}
    readers = consumers(nodes)
    ed = Editor(model, "lerp")
    count = 0

    def split_mul(name: str) -> tuple[str, str] | None:
        node = producer.get(name)
        if node is None or node.op_type != "Mul" or len(readers.get(name, [])) != 1:
            return None
        return node.input[0], node.input[1]

    for node in nodes:
        match = None
        if node.op_type == "Add":
            for left, right in (node.input, node.input[::-1]):
                first, second = split_mul(left), split_mul(right)
                if first is None or second is None:
                    continue
                for a, u in (first, first[::-1]):
                    sub = producer.get(a)
                    if sub is None or sub.op_type != "Sub" or not _is_one(ed, sub.input[0]):
                        continue
                    s = sub.input[1]
                    if s in second:
                        match = (s, u, second[1] if second[0] == s else second[0])
                        break
                if match:
                    break
        if match is None:
            ed.keep(node)
            continue
        s, u, v = match
        step = ed.add1("Mul", [s, ed.add1("Sub", [v, u])])
        ed.nodes.append(helper.make_node("Add", [u, step], list(node.output), name=ed.fresh("Add")))
        count += 1
    ed.finish({})
    return count


def eliminate_common_subexpressions(model: onnx.ModelProto) -> int:
    """Merge nodes with the same op, inputs and attributes (repeatedly); returns how many went."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    removed = 0
    while True:
        seen: dict[tuple[Any, ...], onnx.NodeProto] = {}
        rename: dict[str, str] = {}
        kept = []
        for node in graph.node:
            node_inputs = [rename.get(v, v) for v in node.input]
            del node.input[:]
            node.input.extend(node_inputs)
            key = (node.domain, node.op_type, tuple(node.input), tuple(a.SerializeToString() for a in node.attribute))
            first = seen.get(key)
            if first is not None and not outputs & set(node.output) and node.op_type != "Constant":
                rename.update(zip(node.output, first.output, strict=True))
                continue
            seen.setdefault(key, node)
            kept.append(node)
        if len(kept) == len(graph.node):
            return removed
        removed += len(graph.node) - len(kept)
        del graph.node[:]
        graph.node.extend(kept)
