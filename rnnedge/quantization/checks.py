"""Checks every int8 graph passes before it is written: I/O signature, finite outputs, float state
outputs, and whether TensorRT can take it."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from rnnedge.graphmeta import INPUT_IDS, GraphInfo
from rnnedge.quantization.q_run import zero_states

# Ops TensorRT's ONNX parser cannot take (rnnedge/tensorrt_rules.py): ONNX Runtime's dynamic-quantization output.
TRT_UNSUPPORTED = frozenset(
    {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeLSTM", "MatMulIntegerToFloat"}
)


def _signature(sess: ort.InferenceSession) -> list[tuple[str, str, tuple[Any, ...]]]:
    return [(a.name, a.type, tuple(a.shape)) for a in [*sess.get_inputs(), *sess.get_outputs()]]


def signature_problems(fp32: ort.InferenceSession, int8: ort.InferenceSession) -> list[str]:
    """Differences between the two graphs' input/output names, dtypes and shapes."""
    a, b = _signature(fp32), _signature(int8)
    if a == b:
        return []
    return [f"fp32 {x} vs int8 {y}" for x, y in zip(a, b, strict=False) if x != y] or [
        f"fp32 has {len(a)} inputs+outputs, int8 has {len(b)}"
    ]


def finite_problems(sess: ort.InferenceSession, info: GraphInfo, ids: np.ndarray) -> list[str]:
    """Run once on real ids (and random states) and name every output holding NaN/inf."""
    batch = 2
    x = ids[: 2 * 16].reshape(batch, 16) if info.kind == "parallel" else ids[:batch]
    states = zero_states(info, batch)
    rng = np.random.default_rng(0)
    states = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in states.items()}
    names = [o.name for o in sess.get_outputs()]
    res = sess.run(names, {INPUT_IDS: np.ascontiguousarray(x), **states})
    return [f"{n} has non-finite values" for n, r in zip(names, res, strict=True) if not np.isfinite(r).all()]


def quantized_state_outputs(proto: onnx.ModelProto, info: GraphInfo) -> list[str]:
    """State outputs produced by a DequantizeLinear (i.e. clipped to a calibrated int8 range)."""
    producer = {o: n.op_type for n in proto.graph.node for o in n.output}
    return [s.output for s in info.states if producer.get(s.output) == "DequantizeLinear"]


def tensorrt_check(proto: onnx.ModelProto) -> dict[str, Any]:
    """Can TensorRT take this graph? Structural check always; the real parser when tensorrt is installed.

    Structural: no dynamic-quantization ops, every QuantizeLinear/DequantizeLinear zero point is 0.
    """
    problems = sorted({f"unsupported op {n.op_type}" for n in proto.graph.node if n.op_type in TRT_UNSUPPORTED})
    inits = {i.name: i for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
            zp = inits.get(node.input[2])
            if zp is not None and np.any(onnx.numpy_helper.to_array(zp) != 0):
                problems.append(f"{node.name}: non-zero zero point")
    exporter_check = _exporter_check()
    if exporter_check is not None:  # helper rules cover ops, zero points and more; prefer them
        problems = list(exporter_check(proto))
    result: dict[str, Any] = {
        "structural_ok": not problems,
        "problems": problems[:10],
        "rules": "rnnedge.exporter.tensorrt" if exporter_check else "op list + zero points",
    }
    if importlib.util.find_spec("tensorrt") is None:
        result["parser"] = "not run (tensorrt not installed)"
        result["ok"] = not problems
        return result
    result.update(_trt_parse(proto))
    result["ok"] = not problems and bool(result.get("parser_ok"))
    return result


def _exporter_check() -> Callable[[onnx.ModelProto], list[str]] | None:
    """`rnnedge.exporter.tensorrt.check_tensorrt`, loaded from its file so the exporter package (and
    torch) is never imported; None if it is absent or needs anything we may not import."""
    spec = importlib.util.find_spec("rnnedge")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "exporter" / "tensorrt.py"
    if not path.is_file():
        return None
    try:
        mod_spec = importlib.util.spec_from_file_location("rnnedge_exporter_tensorrt_rules", path)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        return module.check_tensorrt
    except Exception:  # e.g. it started importing torch: fall back to our own rules
        return None


def _trt_parse(proto: onnx.ModelProto) -> dict[str, Any]:  # pragma: no cover - needs a GPU machine
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
