"""Token tables: whatever the step graph computes from the token id alone becomes a lookup.

In a step graph, everything between `input_ids` and the first op that also reads a state (or another
input) is a function of the id only: the embedding, the first block's LayerNorm and input projection,
and, in rnnedge's minimal RNNs whose gates read only x_t (Feng et al., arXiv 2410.01201, section 3),
the first layer's gates z = σ(W_z x) and candidate g(W_h x) as well. `token_tables` evaluates that cone
once for every id in the vocabulary (one batch of V rows) and replaces it by one Gather per value it
hands on: on the bundled minGRU, Gather + LayerNorm + Gemm (128 -> 512) + Split + 2 Sigmoid + Add + Max
become 3 Gathers from (65, 128), (65, 256), (65, 256) tables, so a token costs 5 fewer nodes and one
fewer matrix-vector product. Same inputs, outputs and function (each table row is the cone's value for
that id); the exporter verifies the result against torch like every simplified graph.

The pass does nothing when the cone is only the embedding Gather, when a cone value is empty (aaren's
first-step window), when the vocabulary would make the
tables larger than the weights they replace by more than `max_growth`, or when a cone value is not one
row per id (an op mixing the batch). Each table's doc_string lists the model parameters whose work it
holds (`model.blocks.0.mixer.to_zh.weight ...`): quantization/graph_edits.node_params names a table's
Gather after the last of them, so `--keep-float` globs and sensitivity labels still say which layer it
is. The quantization recipes leave the tables float
(quantization/graph_edits.quantizable_nodes): a lookup does no arithmetic to speed up.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rnnedge.exporter.graphedit import live_nodes
from rnnedge.graphmeta import INPUT_IDS
from rnnedge.graphmeta import TOKEN_TABLE_PREFIX as TABLE_PREFIX


def _cone(graph: onnx.GraphProto, consts: set[str]) -> tuple[list[onnx.NodeProto], set[str]]:
    """Nodes (graph order) whose every input is a constant or derived from the ids alone, and their outputs."""
    derived, nodes = {INPUT_IDS}, []
    for node in graph.node:
        ins = [i for i in node.input if i]
        if any(i in derived for i in ins) and all(i in derived or i in consts for i in ins):
            nodes.append(node)
            derived.update(node.output)
        elif node.op_type == "Constant":
            consts.update(node.output)
    return nodes, derived - {INPUT_IDS}


def _evaluate(model: onnx.ModelProto, nodes: list[onnx.NodeProto], outputs: list[str], ids: np.ndarray) -> list:
    import onnxruntime as ort

    graph = model.graph
    used = {i for n in nodes for i in n.input}
    consts = [n for n in graph.node if n.op_type == "Constant" and n.output[0] in used and n not in nodes]
    ids_input = next(i for i in graph.input if i.name == INPUT_IDS)
    sub = helper.make_graph(
        [*consts, *nodes], "token_cone", [ids_input],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [t for t in graph.initializer if t.name in used],
    )  # fmt: skip
    cone = helper.make_model(sub, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(cone.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run(outputs, {INPUT_IDS: ids})


def _absorbed(nodes: list[onnx.NodeProto], frontier: list[str]) -> dict[str, list[str]]:
    """{frontier value: the `model.*` initializers its cone read, in graph order}."""
    reads: dict[str, list[str]] = {}
    for node in nodes:
        mine = [i for i in node.input if i.startswith("model.")]
        before = [p for i in node.input for p in reads.get(i, [])]
        for o in node.output:
            reads[o] = list(dict.fromkeys(before + mine))
    return {v: reads.get(v, []) for v in frontier}


def token_tables(model: onnx.ModelProto, max_growth: float = 0.25) -> onnx.ModelProto:
    """A copy of step graph `model` with its ids-only cone replaced by per-token tables (or `model`
    itself when the pass saves nothing or does not apply)."""
    graph = model.graph
    if INPUT_IDS not in {i.name for i in graph.input}:
        return model
    consts = {t.name for t in graph.initializer}
    nodes, derived = _cone(graph, consts)
    cone_names = {id(n) for n in nodes}
    consumers = {i for n in graph.node if id(n) not in cone_names for i in n.input}
    frontier = [v for n in nodes for v in n.output if v in consumers or v in {o.name for o in graph.output}]
    if len(nodes) <= len(frontier):
        return model
    embed = next((n for n in nodes if n.op_type == "Gather" and n.input[1] == INPUT_IDS), None)
    if embed is None or embed.input[0] not in consts:
        return model
    vocab = next(t.dims[0] for t in graph.initializer if t.name == embed.input[0])
    ids = np.arange(vocab, dtype=np.int64)  # (V,): one row per token id
    try:
        tables = _evaluate(model, nodes, frontier, ids)  # each (V, ...)
        reversed_rows = _evaluate(model, nodes, frontier, ids[::-1].copy())
    except Exception:  # an op ORT cannot run alone: keep the graph as it is
        return model
    pairs = zip(tables, reversed_rows, strict=True)
    if not all(t.shape[:1] == (vocab,) and np.array_equal(t[::-1], r) for t, r in pairs):
        return model  # not one row per id
    if any(t.size == 0 for t in tables):  # an empty value is shape work (aaren's empty window), not a lookup:
        return model  # a (V, 0, ...) table breaks OpenVINO's Gather on the quantized variants
    replaced = sum(int(np.prod(t.dims)) for t in graph.initializer if t.name in {i for n in nodes for i in n.input})
    if sum(t.size for t in tables) > replaced * (1 + max_growth):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [n for n in out.graph.node if not (n.output and set(n.output) <= derived)]
    params = _absorbed(nodes, frontier)
    for k, (name, table) in enumerate(zip(frontier, tables, strict=True)):
        table_name = f"{TABLE_PREFIX}.{k}"
        tensor = numpy_helper.from_array(np.ascontiguousarray(table), table_name)
        tensor.doc_string = " ".join(params[name])  # the model parameters this table holds the work of
        out.graph.initializer.append(tensor)
        kept.insert(k, helper.make_node("Gather", [table_name, INPUT_IDS], [name], name=f"/{TABLE_PREFIX}/{k}", axis=0))
    del out.graph.node[:]
    out.graph.node.extend(live_nodes(kept, [o.name for o in out.graph.output]))
    used = {i for n in out.graph.node for i in n.input}
    inits = [t for t in out.graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    return out
