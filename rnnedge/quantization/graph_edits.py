"""ONNX graph edits the precision recipes need before ONNX Runtime's tools run (onnx only; no sessions).

Loading and refusing graphs, naming nodes, finding the weight nodes a recipe may convert, labelling
them with the model parameter they use, and two rewrites: `gemm_to_matmul` (the dynamic and
weight-only quantizers take MatMul, not Gemm) and `isolate_outputs` (keeps state outputs float).
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import onnx

from rnnedge.errors import GraphError
from rnnedge.graphmeta import FP32, TOKEN_TABLE_PREFIX, GraphInfo, parse_metadata

# Ops that only appear in a graph that has already been quantized.
QUANT_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLSTM",
        "QLinearMatMul",
        "QGemm",
        "ConvInteger",
        "QLinearConv",
        "MatMulNBits",
        "GatherBlockQuantized",
    }
)
WEIGHT_OPS = ("MatMul", "Gemm")


def load_proto(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Load an .onnx file; GraphError if missing or not a valid model."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"graph not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise GraphError(f"{path} is not a readable ONNX model: {exc}") from exc


def graph_info(proto: onnx.ModelProto, source: str) -> GraphInfo:
    """The GraphInfo an rnnedge graph's metadata_props describe; GraphError if it has none."""
    return parse_metadata({p.key: p.value for p in proto.metadata_props}, source)


def refuse_quantized(proto: onnx.ModelProto, info: GraphInfo, source: str) -> None:
    """GraphError if `proto` is already a precision variant (metadata, or quantization ops in it)."""
    ops = sorted({n.op_type for n in proto.graph.node} & QUANT_OPS)
    if info.variant != FP32 or info.quantization is not None or ops:
        why = f"contains {', '.join(ops)}" if ops else f"its metadata names variant {info.variant!r}"
        raise GraphError(f"{source} is already quantized ({why}); quantize the fp32 export instead")


def name_nodes(proto: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (quantizer options refer to nodes by name)."""
    seen = {n.name for n in proto.graph.node if n.name}
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in seen:
                name += "_"
            node.name = name
            seen.add(name)


def _constants(proto: onnx.ModelProto) -> set[str]:
    consts = {i.name for i in proto.graph.initializer}
    consts |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    return consts


def quantizable_nodes(proto: onnx.ModelProto, op_types: tuple[str, ...] = (*WEIGHT_OPS, "Gather")) -> list[str]:
    """Nodes of `op_types` that carry a weight: MatMul/Gemm with a constant operand, Gather reading a
    constant table (the embedding). A Gather or MatMul on activations only is not one, nor a Gather of
    the step graph's per-token tables (exporter/token_tables.py: a lookup does no arithmetic to speed up)."""
    consts = _constants(proto)
    names = []
    for node in proto.graph.node:
        if node.op_type not in op_types:
            continue
        weight = node.op_type in WEIGHT_OPS and any(i in consts for i in node.input[:2])
        table = node.op_type == "Gather" and node.input[0] in consts
        if weight or (table and not node.input[0].startswith(TOKEN_TABLE_PREFIX)):  # token tables stay float
            names.append(node.name)
    return names


def match_patterns(
    patterns: tuple[str, ...] | list[str],
    names: list[str],
    labels: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, list[str]]:
    """For each pattern, the names it matches: an fnmatch glob (or exact string) on the node's model
    parameter path (`blocks.0.mixer.*`, the same in the step and parallel graphs), its name or its label."""
    labels, params = labels or {}, params or {}

    def hit(name: str, pattern: str) -> bool:
        keys = (name, params.get(name, name), labels.get(name, name))
        return any(k == pattern or fnmatch.fnmatchcase(k, pattern) for k in keys)

    return {p: [n for n in names if hit(n, p)] for p in patterns}


def isolate_outputs(proto: onnx.ModelProto, names: list[str]) -> list[str]:
    """Make each named graph output the output of its own Identity node.

    When a graph output also feeds a node that gets quantized, ONNX Runtime's QDQ quantizer makes the
    graph output the DequantizeLinear's output, i.e. clips the recurrent state to a calibrated range.
    After this rewrite the quantizer sees `<name>.float` (consumers read it) and the output itself is
    copied from the float tensor. Returns the outputs that were rewritten.
    """
    consumed = {i for n in proto.graph.node for i in n.input}
    done = []
    for name in names:
        if name not in consumed:
            continue
        inner = f"{name}.float"
        for node in proto.graph.node:
            for k, out in enumerate(node.output):
                if out == name:
                    node.output[k] = inner
            for k, inp in enumerate(node.input):
                if inp == name:
                    node.input[k] = inner
        proto.graph.node.append(onnx.helper.make_node("Identity", [inner], [name], name=f"{name}/keep_float"))
        done.append(name)
    return done


def gemm_to_matmul(proto: onnx.ModelProto) -> int:
    """Rewrite plain Gemm nodes (alpha = beta = 1, no transA, constant B) as MatMul (+ Add for the bias).

    ONNX Runtime's dynamic and weight-only quantizers handle MatMul but not Gemm, and the exporter's
    simplified graphs use Gemm for every Linear. The MatMul keeps the Gemm's name, so node names stay
    the same. Returns how many Gemm nodes were rewritten.
    """
    inits = {i.name: i for i in proto.graph.initializer}
    rewritten = 0
    new_nodes = []
    for node in proto.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits:
            new_nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            arr = onnx.numpy_helper.to_array(inits[weight]).T.copy()  # (N, K) -> (K, N)
            weight = f"{weight}.T"
            if weight not in inits:
                inits[weight] = onnx.numpy_helper.from_array(arr, weight)
                proto.graph.initializer.append(inits[weight])
        has_bias = len(node.input) > 2 and node.input[2] != ""
        mm_out = f"{node.output[0]}.matmul" if has_bias else node.output[0]
        new_nodes.append(onnx.helper.make_node("MatMul", [node.input[0], weight], [mm_out], name=node.name))
        if has_bias:
            new_nodes.append(
                onnx.helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{node.name}/bias")
            )
        rewritten += 1
    del proto.graph.node[:]
    proto.graph.node.extend(new_nodes)
    return rewritten


def node_params(proto: onnx.ModelProto) -> dict[str, str]:
    """{node name: the model parameter it uses} (e.g. blocks.0.mixer.to_zh) for nodes reading one.

    The path comes from the initializer's name (`model.<path>.weight`), so it is the same in the step
    and parallel graphs, whose node names differ."""
    inits = {i.name for i in proto.graph.initializer}
    params = {i for i in inits if i.startswith("model.")}
    tables = absorbed_params(proto)  # a token table's Gather: the last parameter whose work it holds
    found = {}
    for node in proto.graph.node:
        used = [i for i in node.input if i in params]
        if used:
            found[node.name] = _param_path(used[0])
        elif node.op_type == "Gather" and tables.get(node.input[0]):
            found[node.name] = tables[node.input[0]][-1]
    return found


def _param_path(initializer: str) -> str:
    return initializer.removeprefix("model.").removesuffix(".weight").removesuffix(".bias")


def absorbed_params(proto: onnx.ModelProto) -> dict[str, list[str]]:
    """{token table initializer: the parameter paths whose work it holds} (exporter/token_tables.py):
    in a step graph with tables, these parameters' nodes are gone (the tables are float by construction)."""
    return {
        t.name: list(dict.fromkeys(_param_path(p) for p in t.doc_string.split()))
        for t in proto.graph.initializer
        if t.name.startswith(TOKEN_TABLE_PREFIX)
    }


def node_labels(proto: onnx.ModelProto) -> dict[str, str]:
    """A readable label per node: its name, plus the model parameter it uses (e.g. blocks.0.mixer.out)."""
    params = node_params(proto)
    return {n.name: f"{n.name} ({params[n.name]})" if n.name in params else n.name for n in proto.graph.node}
