"""The graph worker an emulated target runs: ONNX Runtime sessions served over stdin/stdout.

Run as a plain script inside the emulator (`qemu-aarch64 … python3.11 worker.py`), so it imports only
the standard library, NumPy and onnxruntime — never rnnedge (the ARM64 sysroot has nothing else).
Messages both ways: a 4-byte little-endian header length, a JSON header, an 8-byte length and a raw
body: the arrays' bytes back to back, described in the header's "arrays" table (name, dtype, shape,
offset, bytes; plain numeric dtypes only, never pickles). Raw bytes, not `.npz`: zipfile work in an
emulated Python cost more than the graph. Requests:
  {"op": "open", "path", "threads", "optimization", "config"} -> the session's inputs, outputs,
                                                                 metadata, providers and platform
  {"op": "run", "names": [...]} + feeds                        -> {"names": [...]} + outputs
Any failure answers {"error": "<one line>"}; end of input ends the worker.
"""

from __future__ import annotations

import json
import platform
import struct
import sys
from typing import Any

import numpy as np

DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")


def read_message(stream: Any) -> tuple[dict, dict]:
    """(header, arrays) of the next message; ({}, {}) at end of input."""
    raw = stream.read(4)
    if len(raw) < 4:
        return {}, {}
    header = json.loads(stream.read(struct.unpack("<I", raw)[0]))
    (size,) = struct.unpack("<Q", stream.read(8))
    body = bytearray(stream.read(size)) if size else bytearray()  # writable arrays for the caller
    arrays: dict = {}
    for name, dtype, shape, offset, nbytes in header.pop("arrays", []):
        if dtype not in DTYPES:
            raise ValueError(f"array {name!r} has dtype {dtype!r}, not one of {', '.join(DTYPES)}")
        arrays[name] = np.frombuffer(body, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=offset)
        arrays[name] = arrays[name].reshape(shape)
    return header, arrays


def write_message(stream: Any, header: dict, arrays: dict | None = None) -> None:
    """Write one message (see the module docstring) and flush."""
    table, chunks, offset = [], [], 0
    for name, value in (arrays or {}).items():
        arr = np.ascontiguousarray(value)
        table.append([name, arr.dtype.name, list(arr.shape), offset, arr.nbytes])
        chunks.append(arr.tobytes())
        offset += arr.nbytes
    head = json.dumps({**header, "arrays": table} if table else header).encode()
    body = b"".join(chunks)
    stream.write(struct.pack("<I", len(head)) + head + struct.pack("<Q", len(body)) + body)
    stream.flush()


def _args(values: Any) -> list:
    return [[v.name, v.type, [d if isinstance(d, int) else str(d) for d in v.shape]] for v in values]


def _open(ort: Any, req: dict) -> Any:
    opts = ort.SessionOptions()
    levels = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC"}
    opts.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, levels.get(req.get("optimization", "all"), "ORT_DISABLE_ALL")
    )
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if req.get("threads"):
        opts.intra_op_num_threads = int(req["threads"])
    opts.log_severity_level = 3
    for key, value in (req.get("config") or {}).items():
        opts.add_session_config_entry(key, value)
    return ort.InferenceSession(req["path"], sess_options=opts, providers=["CPUExecutionProvider"])


def main() -> None:
    """Serve requests until stdin closes."""
    import onnxruntime as ort

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but messages on the real stdout
    session = None
    while True:
        header, arrays = read_message(inp)
        if not header:
            return
        try:
            if header["op"] == "open":
                session = _open(ort, header)
                meta = session.get_modelmeta().custom_metadata_map
                info = {"machine": platform.machine(), "onnxruntime": ort.__version__, "numpy": np.__version__}
                reply = {"inputs": _args(session.get_inputs()), "outputs": _args(session.get_outputs())}
                write_message(
                    out, {**reply, "meta": dict(meta), "providers": session.get_providers(), "platform": info}
                )
            elif header["op"] == "run" and session is not None:
                results = session.run(header["names"], arrays)
                write_message(out, {"names": header["names"]}, dict(zip(header["names"], results, strict=False)))
            else:
                write_message(out, {"error": f"unknown request {header.get('op')!r}"})
        except Exception as exc:  # the session's own errors go back to the caller as one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            write_message(out, {"error": f"{type(exc).__name__}: {first[:400]}"})


if __name__ == "__main__":
    main()
