"""Checks every variant graph passes before it is written: I/O signature, finite outputs, float state
outputs, and whether TensorRT can take it (rnnedge.tensorrt_rules, plus TensorRT's parser if installed)."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from rnnedge.inference import GraphSession
from rnnedge.tensorrt_rules import check_tensorrt

FLOAT_TYPES = ("tensor(float)", "tensor(float16)")


def signature_problems(fp32: GraphSession, variant: GraphSession, *, io_float16: bool = False) -> list[str]:
    """Differences between the two graphs' input/output names, dtypes and shapes.

    `io_float16`: the recipe makes float I/O float16 (fp16 without keep_io_types); only that dtype may differ.
    """
    a, b = fp32.signature(), variant.signature()
    if [x[0] for x in a] != [y[0] for y in b]:
        return [f"inputs+outputs {[x[0] for x in a]} became {[y[0] for y in b]}"]
    problems = []
    for (name, t32, s32), (_, tv, sv) in zip(a, b, strict=True):
        want = "tensor(float16)" if io_float16 and t32 == "tensor(float)" else t32
        if tv != want or sv != s32:
            problems.append(f"{name}: fp32 {t32} {list(s32)} vs variant {tv} {list(sv)}")
    return problems


def finite_problems(graph: GraphSession, ids: np.ndarray) -> list[str]:
    """Run once on real ids (N,) with random float states; name every output holding NaN/inf."""
    batch = 2
    x = ids[: 2 * 16].reshape(batch, 16) if graph.info.kind == "parallel" else ids[:batch]
    rng = np.random.default_rng(0)
    states = [
        rng.standard_normal(z.shape).astype(z.dtype) if np.issubdtype(z.dtype, np.floating) else z
        for z in graph.zero_states(batch)
    ]
    logits, new = graph.run(x, states)
    return [
        f"{n} has non-finite values"
        for n, r in zip(graph.outputs, [logits, *new], strict=True)
        if not np.isfinite(r).all()
    ]


def quantized_state_outputs(proto: onnx.ModelProto, graph: GraphSession) -> list[str]:
    """State outputs produced by a DequantizeLinear (i.e. clipped to a calibrated int8 range)."""
    producer = {o: n.op_type for n in proto.graph.node for o in n.output}
    return [s.output for s in graph.info.states if producer.get(s.output) == "DequantizeLinear"]


def tensorrt_report(proto: onnx.ModelProto) -> dict[str, Any]:
    """Can TensorRT take this graph? rnnedge.tensorrt_rules always; TensorRT's parser when installed."""
    problems = check_tensorrt(proto)
    result: dict[str, Any] = {"rules_ok": not problems, "problems": problems[:10], "rules": "rnnedge.tensorrt_rules"}
    if importlib.util.find_spec("tensorrt") is None:
        result["parser"] = "not run (tensorrt not installed)"
        result["ok"] = not problems
        return result
    result.update(_trt_parse(proto))
    result["ok"] = not problems and bool(result.get("parser_ok"))
    return result


def _trt_parse(proto: onnx.ModelProto) -> dict[str, Any]:  # pragma: no cover - needs a CUDA machine
    try:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "g.onnx"
            onnx.save(proto, str(path))
            ok = bool(parser.parse_from_file(os.fspath(path)))
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        return {"parser": f"tensorrt {trt.__version__}", "parser_ok": ok, "parser_errors": errors[:5]}
    except Exception as exc:
        return {"parser": "tensorrt failed to run", "parser_ok": False, "parser_errors": [repr(exc)[:300]]}
