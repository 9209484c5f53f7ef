"""Private helpers: load rnnedge graphs, run step/parallel graphs with carried state, measure loss.

torch-free and runtime-free on purpose: onnx + onnxruntime + numpy only.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from rnnedge.errors import GraphError, RnnedgeError
from rnnedge.graphmeta import INPUT_IDS, LOGITS, GraphInfo, parse_metadata

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
    return parse_metadata({p.key: p.value for p in proto.metadata_props}, source)


def refuse_quantized(proto: onnx.ModelProto, info: GraphInfo, source: str) -> None:
    """Raise if `proto` was already quantized (metadata or quantization ops)."""
    ops = sorted({n.op_type for n in proto.graph.node} & QUANT_OPS)
    if info.quantization is not None or ops:
        why = f"contains {', '.join(ops)}" if ops else "carries rnnedge.quantization metadata"
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


def quantizable_nodes(proto: onnx.ModelProto) -> list[str]:
    """MatMul/Gemm nodes with a constant weight, and Gather nodes reading a constant table (embeddings)."""
    consts = {i.name for i in proto.graph.initializer}
    consts |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    names = []
    for node in proto.graph.node:
        weight = node.op_type in WEIGHT_OPS and any(i in consts for i in node.input[:2])
        if weight or (node.op_type == "Gather" and node.input[0] in consts):
            names.append(node.name)
    return names


def match_patterns(
    patterns: tuple[str, ...] | list[str], names: list[str], labels: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """For each pattern (exact name or fnmatch glob, on the node name or its label), the names it matches."""
    labels = labels or {}

    def hit(name: str, pattern: str) -> bool:
        label = labels.get(name, name)
        return name == pattern or fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(label, pattern)

    return {p: [n for n in names if hit(n, p)] for p in patterns}


def session(model: str | os.PathLike[str] | bytes, threads: int = 1) -> ort.InferenceSession:
    """A CPU InferenceSession; GraphError if ONNX Runtime cannot load the model."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        what = "the graph" if isinstance(model, bytes) else str(model)
        raise GraphError(f"ONNX Runtime cannot load {what}: {first}") from exc


def zero_states(info: GraphInfo, batch: int) -> dict[str, np.ndarray]:
    return {s.input: np.zeros((batch, s.width), np.float32) for s in info.states}


def streams_of(ids: np.ndarray, streams: int) -> np.ndarray:
    """(N,) ids -> (B, L): B contiguous slices at different offsets."""
    streams = max(1, min(streams, len(ids) // 2))
    length = len(ids) // streams
    if length < 2:
        raise RnnedgeError(f"text too short: {len(ids)} characters")
    return ids[: streams * length].reshape(streams, length)  # (B, L)


def _nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-position negative log-likelihood in nats. logits (..., V), targets (...)."""
    logits = logits.astype(np.float64)
    m = logits.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(axis=-1)) + m[..., 0]
    return lse - np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]


def run_step(sess: ort.InferenceSession, info: GraphInfo, ids: np.ndarray, record_every: int = 0) -> tuple:
    """Run the step graph over ids (B, L) with carried state.

    Returns (mean NLL of predicting ids[:, t+1], feeds recorded every `record_every` steps (0: none)).
    """
    batch, length = ids.shape
    states = zero_states(info, batch)
    outs = [LOGITS] + [s.output for s in info.states]
    total, feeds = 0.0, []
    for t in range(length - 1):
        feed = {INPUT_IDS: np.ascontiguousarray(ids[:, t]), **states}
        if record_every and t % record_every == 0:
            feeds.append(feed)
        res = sess.run(outs, feed)
        total += float(_nll(res[0], ids[:, t + 1]).sum())  # res[0]: (B, V)
        states = {s.input: v for s, v in zip(info.states, res[1:], strict=True)}
    return total / (batch * (length - 1)), feeds


def run_parallel(sess: ort.InferenceSession, info: GraphInfo, ids: np.ndarray, window: int = 256) -> float:
    """Mean NLL of the parallel graph over ids (B, L), fed in windows with carried state."""
    batch, length = ids.shape
    window = min(window, info.max_seq_len or window)
    states = zero_states(info, batch)
    outs = [LOGITS] + [s.output for s in info.states]
    total, count = 0.0, 0
    for start in range(0, length - 1, window):
        x = ids[:, start : min(start + window, length - 1)]  # (B, T)
        y = ids[:, start + 1 : start + 1 + x.shape[1]]  # (B, T)
        res = sess.run(outs, {INPUT_IDS: np.ascontiguousarray(x), **states})
        total += float(_nll(res[0], y).sum())  # res[0]: (B, T, V)
        count += y.size
        states = {s.input: v for s, v in zip(info.states, res[1:], strict=True)}
    return total / count


def graph_loss(model: str | os.PathLike[str] | bytes, info: GraphInfo, ids: np.ndarray, streams: int = 8) -> float:
    """Held-out loss (nats/char) of one graph (step or parallel) on ids (N,)."""
    sess = session(model)
    batch = streams_of(ids, streams)
    if info.kind == "step":
        return run_step(sess, info, batch)[0]
    return run_parallel(sess, info, batch)


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

    ONNX Runtime's dynamic quantizer handles MatMul but not Gemm, and the exporter's simplified graphs
    use Gemm for every Linear. The MatMul keeps the Gemm's name, so node names stay the same.
    """
    inits = {i.name: i for i in proto.graph.initializer}
    nodes = list(proto.graph.node)
    rewritten = 0
    new_nodes = []
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits:
            new_nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            arr = onnx.numpy_helper.to_array(inits[weight]).T.copy()
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


def node_labels(proto: onnx.ModelProto) -> dict[str, str]:
    """A readable label per node: its name, plus the model parameter it uses (e.g. blocks.0.mixer.out)."""
    params = {i.name for i in proto.graph.initializer if i.name.startswith("model.")}
    labels = {}
    for node in proto.graph.node:
        used = [i for i in node.input if i in params]
        if used:
            param = used[0].removeprefix("model.").removesuffix(".weight").removesuffix(".bias")
            labels[node.name] = f"{node.name} ({param})"
        else:
            labels[node.name] = node.name
    return labels
