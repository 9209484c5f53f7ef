"""Where ONNX Runtime placed a graph: the Memcpy nodes it inserted between the CPU and a device provider.

ORT inserts a MemcpyFromHost or MemcpyToHost node wherever a tensor crosses between the CPU and a
device provider such as the CUDA EP (an op the device lacks, a shape computation kept on the CPU);
each is a copy on every run, and ORT refuses CUDA graphs while any remain. To count them, the
session is opened with `optimized_model` (ORT then writes the graph it runs, after partitioning) and
the op types in that file are counted. The file is read with a small protobuf wire-format walk
(ModelProto.graph -> GraphProto.node -> NodeProto.op_type, and the subgraphs held in node
attributes), so this layer stays free of the onnx package.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from rnnedge.errors import GraphError
from rnnedge.inference.providers import ProviderArg
from rnnedge.inference.sessions import Source, open_session

MEMCPY_OPS = ("MemcpyFromHost", "MemcpyToHost")
# Protobuf field numbers (onnx.proto): ModelProto.graph, GraphProto.node, NodeProto.op_type /
# .attribute, AttributeProto.g / .graphs.
_MODEL_GRAPH, _GRAPH_NODE, _NODE_OP_TYPE, _NODE_ATTRIBUTE, _ATTR_GRAPH, _ATTR_GRAPHS = 7, 1, 4, 5, 6, 11
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or malformed varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, memoryview | None]]:
    """(field number, payload) of each field of one message; payload None for non-bytes wire types."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, pos = _varint(buf, pos)
            yield number, None
        elif wire == _BYTES:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("field runs past the end of its message")
            yield number, buf[pos : pos + size]
            pos += size
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
            yield number, None
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _count_graph(graph: memoryview, counts: Counter[str]) -> None:
    for number, node in _fields(graph):
        if number != _GRAPH_NODE or node is None:
            continue
        for field, value in _fields(node):
            if field == _NODE_OP_TYPE and value is not None:
                counts[bytes(value).decode("utf-8", "replace")] += 1
            elif field == _NODE_ATTRIBUTE and value is not None:
                for attr_field, sub in _fields(value):
                    if attr_field in (_ATTR_GRAPH, _ATTR_GRAPHS) and sub is not None:
                        _count_graph(sub, counts)


def op_type_counts(model: bytes) -> Counter[str]:
    """How many nodes of each op type a serialized ONNX model holds, subgraphs (Loop/Scan/If bodies) included."""
    counts: Counter[str] = Counter()
    try:
        for number, graph in _fields(memoryview(model)):
            if number == _MODEL_GRAPH and graph is not None:
                _count_graph(graph, counts)
    except ValueError as exc:
        raise GraphError(f"not a readable ONNX model: {exc}") from exc
    return counts


def count_memcpy(path: str | os.PathLike[str]) -> dict[str, int]:
    """{'MemcpyFromHost': n, 'MemcpyToHost': m, 'total': n + m} for an ONNX file (e.g. ORT's optimized graph)."""
    counts = op_type_counts(Path(path).read_bytes())
    out = {op: counts[op] for op in MEMCPY_OPS}
    return {**out, "total": sum(out.values())}


def memcpy_nodes(source: Source, providers: ProviderArg, threads: int | None = None) -> dict[str, int]:
    """The Memcpy nodes ORT places when it runs `source` on `providers` (count_memcpy of its optimized graph).

    GraphError when ORT cannot write its optimized graph (e.g. TensorRT's compiled nodes).
    """
    with tempfile.TemporaryDirectory(prefix="rnnedge-placement-") as tmp:
        target = Path(tmp) / "optimized.onnx"
        open_session(source, providers, threads, optimized_model=target)
        if not target.is_file():
            raise GraphError("ONNX Runtime wrote no optimized graph for this session")
        return count_memcpy(target)
