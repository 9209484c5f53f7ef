"""int8 on LiteRT: full-integer quantization of litert/step.tflite by the TFLite converter, and its drift.

    quantize_litert(export_dir, text)      # python -m rnnedge.exporter.litert_int8 DIR --data FILE

The representative dataset is real step inputs: the first `calib_chars` of `text` fed through ONNX Runtime
on litert/step.onnx, each step's ids and the states it was fed (so the recurrent state is calibrated and
quantized like every activation). The converter (exporter/litert_convert.py, `TFLITE_BUILTINS_INT8`)
writes int8 weights and activations with int32 accumulation; the model keeps float32 I/O through
QUANTIZE/DEQUANTIZE ops. Refused unless every FULLY_CONNECTED op of the result takes int8 inputs.

Writes into litert/:
    step.litert-int8.tflite  the integer model
    step.litert-int8.json    its sidecar (as step.json), plus the op list, calibration and drift figures
    step.litert-int8.onnx    a descriptor, not a model: the graph's I/O and metadata (variant litert-int8)
                             around one `rnnedge.litert::TFLiteModel` node naming the .tflite. ONNX Runtime
                             refuses it; `--provider litert` runs the .tflite beside it, so eval, generate,
                             bench and `drift DIR --provider litert --variant litert-int8` take it as a variant.

Drift is measured on the text after the calibration part (held out): mean NLL of int8 vs fp32 on LiteRT,
max |Δlogit| over the whole stream and over its first and last tenth (growth), top-1 agreement.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from rnnedge.errors import GraphError, RnnedgeError
from rnnedge.exporter import litert as lx
from rnnedge.graphmeta import INPUT_IDS, MANIFEST
from rnnedge.inference import open_graph, open_session
from rnnedge.inference.loop import StepRunner
from rnnedge.inference.sessions import GraphSession
from rnnedge.inference.text import encode_text
from rnnedge.io import read_json, write_bytes, write_json
from rnnedge.targets import litert as rt

VARIANT = "litert-int8"


def vfy_session(path: Path) -> Any:
    """ONNX Runtime on a graph file, one thread (the rewrite check)."""
    return open_session(path, "cpu", threads=1, spinning=False)


STUB_DOMAIN = "rnnedge.litert"


def calibration_set(graph: GraphSession, ids: np.ndarray) -> dict[str, np.ndarray]:
    """{input name: (n, *shape)}: each step's ids and the states ONNX Runtime fed it, over ids (L,)."""
    rows: dict[str, list[np.ndarray]] = {INPUT_IDS: [], **{s.input: [] for s in graph.info.states}}

    def keep(t: int, x: np.ndarray, logits: np.ndarray, states: list[np.ndarray]) -> None:
        rows[INPUT_IDS].append(x.astype(np.int64))
        for s, value in zip(graph.info.states, states, strict=True):
            rows[s.input].append(value)

    StepRunner(graph).run(ids[None], hook=keep)
    return {name: np.stack(values) for name, values in rows.items()}


def integer_kernels(ops: dict[str, int]) -> list[str]:
    """The FULLY_CONNECTED ops (input dtypes) that are not int8: empty when the model's products are integer."""
    fc = [op for op in ops if op.startswith("FULLY_CONNECTED(")]
    return [op for op in fc if "int8" not in op] if fc else ["no FULLY_CONNECTED op"]


def without_dynamic_div(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy where each Div by a computed tensor (not a Sqrt) is a Mul by its Pow(-1), and the count.

    TFLite's int8 DIV refuses a divisor whose raw int8 value is 0 (div.cc: `data[i] != 0`), which an
    asymmetric int8 range over a positive divisor (the GELU's 1 + p|x|) produces; POW has no int8 kernel,
    so the converter keeps that one op float between DEQUANTIZE/QUANTIZE."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    constants = {i.name for i in out.graph.initializer}
    # x / Sqrt(v) (a norm) onnx2tf already writes as x * RSQRT(v): only the other Divs are rewritten
    constants |= {n.output[0] for n in out.graph.node if n.op_type == "Sqrt"}
    minus_one = "rnnedge_litert_minus_one"
    nodes, count = [], 0
    for node in out.graph.node:
        if node.op_type == "Div" and node.input[1] not in constants:
            inverse = f"{node.output[0]}_inverse"
            nodes.append(onnx.helper.make_node("Pow", [node.input[1], minus_one], [inverse]))
            nodes.append(onnx.helper.make_node("Mul", [node.input[0], inverse], list(node.output), name=node.name))
            count += 1
        else:
            nodes.append(node)
    if count:
        out.graph.initializer.append(onnx.numpy_helper.from_array(np.array(-1.0, np.float32), minus_one))
        del out.graph.node[:]
        out.graph.node.extend(nodes)
    onnx.checker.check_model(out)
    return out, count


def descriptor(model: onnx.ModelProto, tflite_name: str) -> onnx.ModelProto:
    """The ONNX stand-in of a .tflite variant: I/O and metadata of `model`, one TFLiteModel node."""
    node = onnx.helper.make_node(
        "TFLiteModel",
        [i.name for i in model.graph.input],
        [o.name for o in model.graph.output],
        domain=STUB_DOMAIN,
        file=tflite_name,
    )
    graph = onnx.helper.make_graph([node], "litert_descriptor", list(model.graph.input), list(model.graph.output))
    stub = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid(STUB_DOMAIN, 1)]
    )
    meta = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(stub, {**meta, "rnnedge.variant": VARIANT, "rnnedge.litert_model": tflite_name})
    return stub


def _logits(session: Any, info: Any, source: str, ids: np.ndarray) -> tuple[float, np.ndarray]:
    out: list[np.ndarray] = []
    nll, _ = StepRunner(GraphSession(session, info, source)).run(
        ids[None], hook=lambda t, x, logits, s: out.append(logits[0])
    )
    return nll, np.stack(out)  # (L-1, V)


def drift(fp32: Any, int8: Any, info: Any, ids: np.ndarray) -> dict[str, Any]:
    """int8 vs fp32 on LiteRT over held-out ids (L,): ΔNLL, max |Δlogit| (all, first/last tenth), top-1."""
    nll_a, a = _logits(fp32, info, "fp32", ids)
    nll_b, b = _logits(int8, info, VARIANT, ids)
    diff = np.abs(a - b).max(axis=1)  # (L-1,)
    tenth = max(1, len(diff) // 10)
    return {
        "tokens": len(diff),
        "nll_fp32": round(nll_a, 5),
        "nll_int8": round(nll_b, 5),
        "delta_nll": round(nll_b - nll_a, 5),
        "max_abs_dlogit": float(diff.max()),
        "max_abs_dlogit_first_tenth": float(diff[:tenth].max()),
        "max_abs_dlogit_last_tenth": float(diff[-tenth:].max()),
        "top1_agreement": float(np.mean(a.argmax(1) == b.argmax(1))),
    }


def quantize_litert(
    export_dir: str | Path, text: str, calib_chars: int = 1000, held_out_chars: int = 2000
) -> dict[str, Any]:
    """Write the litert-int8 variant into export_dir/litert (see the module docstring); its sidecar."""
    folder = Path(export_dir) / lx.LITERT_DIR
    if not (folder / "step.onnx").is_file() or not (folder / "step.tflite").is_file():
        raise RnnedgeError(f"{folder} holds no step.onnx + step.tflite (export with --target litert first)")
    graph = open_graph(folder / "step.onnx", "step", "cpu", threads=1)
    ids = encode_text(text, graph.info.vocab, on_unknown="skip", min_chars=calib_chars + 100)
    calib, held_out = ids[:calib_chars], ids[calib_chars : calib_chars + held_out_chars]
    model = onnx.load(folder / "step.onnx")
    name = f"step.{VARIANT}.tflite"
    stub = descriptor(model, name)
    with tempfile.TemporaryDirectory(prefix="rnnedge-litert-int8-") as tmp:
        work = Path(tmp)
        np.savez(work / "rep.npz", **calibration_set(graph, calib))
        rewritten, divs = without_dynamic_div(model)
        (work / "int8.onnx").write_bytes(rewritten.SerializeToString())
        same = lx.stream_check(
            vfy_session(work / "int8.onnx"), graph.session, len(graph.info.vocab), 200, 1e-4, "div_rewrite"
        )
        if not same.passed:
            raise GraphError(f"the Div -> Pow(-1) rewrite changed the graph: max |Δ| {same.max_abs_diff:.3g}")
        report = lx.run_converter(work / "int8.onnx", work / "out", rep=work / "rep.npz")
        tflite = (work / "out" / "step.int8.tflite").read_bytes()
        car = lx.sidecar(model, tflite, outputs=report["int8_outputs"], file=name)
        car["metadata"] = {p.key: p.value for p in stub.metadata_props}  # variant litert-int8
        floats = integer_kernels(car["ops"])
        if floats:
            raise GraphError(f"the int8 .tflite computes its products in float: {', '.join(floats)}")
        (work / "out" / name).write_bytes(tflite)
        (work / "out" / name.replace(".tflite", ".json")).write_text(json.dumps(car))
        int8 = rt.LiteRtSession(work / "out" / name, threads=1)
        fp32 = rt.LiteRtSession(folder / "step.tflite", threads=1)
        car["drift"] = drift(fp32, int8, graph.info, held_out)
    car["rewrite"] = {"div_to_pow_minus_one": divs, "max_abs_diff_vs_graph": same.max_abs_diff}
    car["calibration"] = {"steps": len(calib), "source": "the text's first chars, ORT fp32 states"}
    car["converter"] = report.get("versions", {})
    write_bytes(folder / name, tflite)
    write_json(folder / name.replace(".tflite", ".json"), car)
    write_bytes(folder / f"step.{VARIANT}.onnx", stub.SerializeToString())
    manifest_path = Path(export_dir) / MANIFEST
    if manifest_path.is_file():
        manifest = read_json(manifest_path, "manifest")
        section = manifest.setdefault("litert", {})
        section.setdefault("variants", {})[VARIANT] = {
            "file": name, "size_bytes": len(tflite), "ops": car["ops"], "drift": car["drift"],
        }  # fmt: skip
        write_json(manifest_path, manifest)
    return car


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="int8 (full-integer) LiteRT variant of an export's litert/")
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="UTF-8 text: calibration, then held-out")
    parser.add_argument("--calib-chars", type=int, default=1000)
    parser.add_argument("--held-out-chars", type=int, default=2000)
    args = parser.parse_args(argv)
    car = quantize_litert(args.export_dir, args.data.read_text(), args.calib_chars, args.held_out_chars)
    print(json.dumps({"variant": VARIANT, "ops": car["ops"], "drift": car["drift"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
