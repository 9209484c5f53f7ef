"""What the other-runtime targets (openvino.py, tract.py) share: the InferenceSession methods rnnedge uses
over another runtime's compiled model, and the ONNX metadata read without onnx.

A subclass loads the graph in its runtime and implements `_compute(feed) -> outputs in get_outputs()
order`; this class gives get_inputs/get_outputs/get_modelmeta/get_providers/get_provider_options, run
and the IOBinding stand-in (bind_numpy/run_with_iobinding, like targets/remote.py's), so the step loop,
NLL, drift and the runtime run unchanged on it. Torch-free and onnx-free: `read_metadata` walks the
ModelProto's top-level protobuf fields itself (the runtimes keep no, or no readable, copy of it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import GraphError
from rnnedge.targets.remote import RemoteArg, RemoteMeta, SessionStandIn

METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {1: key, 2: value}
GRAPH = 7  # ModelProto.graph
GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT = 5, 11, 12  # GraphProto fields (TensorProto {8: name}, ValueInfoProto)
ORT_TYPE = {  # NumPy dtype name -> the ORT type string get_inputs()/get_outputs() report
    "float32": "tensor(float)",
    "float16": "tensor(float16)",
    "float64": "tensor(double)",
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
    "int8": "tensor(int8)",
    "uint8": "tensor(uint8)",
    "bool": "tensor(bool)",
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each top-level protobuf field; length-delimited values as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")
        yield number, wire, value


def read_metadata(data: bytes) -> dict[str, str]:
    """The `metadata_props` of a serialized ONNX ModelProto; GraphError if it is not one."""
    out: dict[str, str] = {}
    try:
        for number, wire, value in _fields(data):
            if number == METADATA_PROPS and wire == 2:
                entry = {n: v for n, w, v in _fields(value) if w == 2}
                out[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise GraphError(f"not an ONNX model: {exc}") from exc
    return out


ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


def _sub(data: bytes, number: int) -> list[bytes]:
    return [v for n, w, v in _fields(data) if n == number and w == 2]


def _value_info(data: bytes) -> RemoteArg:
    """ValueInfoProto {1: name, 2: TypeProto {1: tensor {1: elem_type, 2: shape {1: dim {1: value, 2: param}}}}}."""
    name = b"".join(_sub(data, 1)[:1]).decode()
    tensor = b"".join(_sub(b"".join(_sub(data, 2)[:1]), 1)[:1])
    elem = next((v for n, w, v in _fields(tensor) if n == 1 and w == 0), 0)
    dims: list[Any] = []
    for dim in _sub(b"".join(_sub(tensor, 2)[:1]), 1):
        fields = {n: v for n, _, v in _fields(dim)}
        dims.append(fields[1] if 1 in fields else fields[2].decode() if 2 in fields else "?")
    dtype = ELEM_TYPES.get(elem, f"elem_type {elem}")
    return RemoteArg(name, ORT_TYPE.get(dtype, f"tensor({dtype})"), dims)


def read_io(data: bytes) -> tuple[list[RemoteArg], list[RemoteArg]]:
    """The graph inputs (initializers excluded) and outputs a serialized ONNX ModelProto declares, in order:
    name, ORT type string and shape (an int, or the symbolic dim's name), as ONNX Runtime reports them."""
    try:
        graph = b"".join(_sub(data, GRAPH)[:1])
        initializers = {b"".join(_sub(t, 8)[:1]).decode() for t in _sub(graph, GRAPH_INITIALIZER)}
        inputs = [a for a in map(_value_info, _sub(graph, GRAPH_INPUT)) if a.name not in initializers]
        return inputs, [_value_info(v) for v in _sub(graph, GRAPH_OUTPUT)]
    except (ValueError, UnicodeDecodeError, KeyError) as exc:
        raise GraphError(f"not an ONNX model: {exc}") from exc


def onnx_bytes(source: str | os.PathLike[str] | bytes, runtime: str) -> bytes:
    """The bytes of an ONNX graph (a path or bytes); GraphError for an ORT-format file, which only ORT reads."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if data[4:8] == b"ORTM":
        raise GraphError(f"{runtime} reads ONNX files, not ONNX Runtime's .ort format; give it the .onnx graph")
    return data


@contextlib.contextmanager
def as_file(source: str | os.PathLike[str] | bytes) -> Iterator[str]:
    """A path holding the graph: the file itself, or a temp copy of serialized bytes (removed after)."""
    if not isinstance(source, bytes):
        yield str(source)
        return
    fd, name = tempfile.mkstemp(prefix="rnnedge-graph-", suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(source)
        yield name
    finally:
        Path(name).unlink(missing_ok=True)


class ForeignSession(SessionStandIn):
    """Base of a graph compiled by another runtime: I/O and metadata as the ONNX file declares them (what
    ONNX Runtime reports too, so two sessions' signatures compare); subclasses implement `_compute`."""

    provider = "foreign"

    def __init__(self, data: bytes):
        self._meta = RemoteMeta(read_metadata(data))
        self._inputs, self._outputs = read_io(data)
        self._output_names = [o.name for o in self._outputs]
        self._providers = [self.provider]

    def _compute(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def run(self, names: Sequence[str] | None, feed: Mapping[str, np.ndarray], run_options: Any = None) -> list:
        """The outputs `names` (None: all) for `feed`, as NumPy arrays."""
        missing = [i.name for i in self._inputs if i.name not in feed]
        if missing:
            raise GraphError(f"{self.provider}: missing input(s) {', '.join(missing)}")
        results = dict(zip(self._output_names, self._compute(feed), strict=True))
        wanted = list(names) if names else self._output_names
        unknown = [n for n in wanted if n not in results]
        if unknown:
            raise GraphError(f"{self.provider}: the graph has no output(s) {', '.join(unknown)}")
        return [results[n] for n in wanted]
