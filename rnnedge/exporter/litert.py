"""The litert export target: the mobile step graph as a TFLite-built-ins-only `.tflite` for LiteRT.

    export_model(ckpt, out, target="litert")      # rnnedge export CKPT --out OUT --target litert

writes, next to the usual graphs, the folder `litert/`:

    litert/step.onnx     the mobile step graph (exporter/mobile.py: batch 1, no Erf) with int64 ids (onnx2tf
                         cannot convert the int32-ids embedding Gather), `rnnedge.target = litert`
    litert/step.tflite   onnx2tf's conversion of a copy of it (TFLite built-in ops only, no Flex)
    litert/step.json     the sidecar: vocabulary, state layout with the fixed shapes, the .tflite's input
                         order and signature names, ids dtype, the ONNX metadata, the op list, the checks

Why onnx2tf on the ONNX graph rather than litert-torch from the PyTorch model: the .tflite is converted
from, and checked against, the very graph ONNX Runtime runs, so "matches" means the same model in two
runtimes; its op list is known built-ins only (the Erf of exact GELU is gone in the mobile graph), and it
needs no second PyTorch (litert-torch 0.10 pulls jax, transformers and torchao besides). The conversion
runs in the converter's own Python (exporter/litert_convert.py, targets/litert.py: converter_python).

Before anything is written: the mobile graph is checked against PyTorch and the parallel graph (as for
`--target mobile`), then the .tflite runs in LiteRT against ONNX Runtime on litert/step.onnx over a
stream of tokens with each runtime's state fed back; max |Δ| over logits and states <= the tolerance.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from rnnedge import __version__
from rnnedge.errors import DependencyError, GraphError, VerificationError
from rnnedge.exporter import mobile
from rnnedge.exporter import verify as vfy
from rnnedge.graphmeta import INPUT_IDS, PREFIX
from rnnedge.targets import litert as rt

LITERT_DIR = "litert"
TARGET_KEY = "rnnedge.target"
CONVERTER = Path(__file__).with_name("litert_convert.py")
STREAM = 1000  # tokens of the LiteRT-vs-ORT check


def int64_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The mobile graph with int64 `input_ids` (its only consumer is the embedding Gather) and the target."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    ids = next(i for i in out.graph.input if i.name == INPUT_IDS)
    ids.type.tensor_type.elem_type = onnx.TensorProto.INT64
    meta = {p.key: p.value for p in out.metadata_props}
    del out.metadata_props[:]
    if PREFIX + "ids_dtype" in meta:  # the metadata tells the copy's true ids dtype (graphmeta)
        meta[PREFIX + "ids_dtype"] = "int64"
    onnx.helper.set_model_props(out, {**meta, TARGET_KEY: LITERT_DIR})
    out.producer_name, out.producer_version = "rnnedge", __version__
    onnx.checker.check_model(out, full_check=True)
    return out


def run_converter(graph: Path, out: Path, rep: Path | None = None) -> dict[str, Any]:
    """Run exporter/litert_convert.py under the converter's Python; its JSON report. DependencyError when
    there is no converter, GraphError (its last line) when the conversion fails."""
    python = rt.converter_python()
    if python is None:
        raise DependencyError(f"no LiteRT converter (TensorFlow + onnx2tf) here; {rt.CONVERTER_HINT}")
    cmd = [python, str(CONVERTER), "--onnx", str(graph), "--out", str(out), *(["--int8", str(rep)] if rep else [])]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DependencyError(f"cannot run the LiteRT converter {python}: {exc}") from exc
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        marked = [ln.split("error: ", 1)[1] for ln in done.stderr.splitlines() if ln.startswith("litert_convert: ")]
        tail = marked or [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise GraphError(f"the LiteRT conversion failed: {(tail[-1] if tail else f'exit {done.returncode}')[:300]}")
    return dict(json.loads(lines[-1]))


def _arg(value: onnx.ValueInfoProto) -> list[Any]:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name
    return [value.name, rt.ORT_TYPE[dtype], [d.dim_value for d in value.type.tensor_type.shape.dim]]


def sidecar(
    model: onnx.ModelProto, tflite: bytes, outputs: dict[str, str] | None = None, file: str = "step.tflite"
) -> dict[str, Any]:
    """The sidecar of a .tflite converted from `model`: `outputs` maps the .tflite's signature output
    names to the ONNX names (None: they are the ONNX names, as onnx2tf keeps them)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    runner = interp.get_signature_runner()
    ins, outs = runner.get_input_details(), runner.get_output_details()
    back = {v: k for k, v in (outputs or {n: n for n in outs}).items()}
    meta = {p.key: p.value for p in model.metadata_props}

    def entries(details: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
        rows = [
            {"name": onnx_name, "tflite": key, "dtype": np.dtype(details[key]["dtype"]).name,
             "shape": [int(d) for d in details[key]["shape"]]}
            for onnx_name, key in names.items()
        ]  # fmt: skip
        return sorted(rows, key=lambda r: details[r["tflite"]]["index"])  # the .tflite's own order

    onnx_in = [_arg(v) for v in model.graph.input]
    onnx_out = [_arg(v) for v in model.graph.output]
    missing = [a[0] for a in onnx_in if a[0] not in ins] + [a[0] for a in onnx_out if a[0] not in back]
    if missing:
        raise GraphError(f"the .tflite signature lacks {', '.join(missing)}")
    states = json.loads(meta.get("rnnedge.states", "[]"))
    for s in states:  # the fixed graph's true shapes (batch 1)
        s["shape"] = [1 if d == "batch" else d for d in s["shape"]]
    return {
        "format": rt.SIDECAR_FORMAT,
        "file": file,
        "sha256": hashlib.sha256(tflite).hexdigest(),
        "size_bytes": len(tflite),
        "signature": "serving_default",
        "ids_dtype": np.dtype(ins[INPUT_IDS]["dtype"]).name,
        "vocab": meta.get("rnnedge.vocab", ""),
        "states": states,
        "inputs": entries(ins, {a[0]: a[0] for a in onnx_in}),
        "outputs": entries(outs, {a[0]: back[a[0]] for a in onnx_out}),
        "onnx_io": {"inputs": onnx_in, "outputs": onnx_out},
        "metadata": meta,
        "ops": rt.op_counts(interp),
    }


def stream_check(
    session: Any, ort_session: Any, vocab_size: int, tokens: int, tol: float, name: str
) -> vfy.CheckResult:
    """LiteRT vs ONNX Runtime over `tokens` random ids, each runtime's own state fed back; max |Δ|."""
    states = {i.name: np.zeros([int(d) for d in i.shape], np.float32) for i in ort_session.get_inputs()}
    states.pop(INPUT_IDS)
    mine, theirs = dict(states), dict(states)
    out_names = [o.name for o in ort_session.get_outputs()]
    ids = np.random.default_rng(7).integers(0, vocab_size, size=tokens)
    worst = 0.0
    for t in ids:
        feed = np.array([t], np.int64)
        want = ort_session.run(out_names, {INPUT_IDS: feed, **theirs})
        got = session.run(out_names, {INPUT_IDS: feed, **mine})
        worst = max(worst, vfy._diff(got, want))
        theirs = {n.replace("state_out", "state_in"): v for n, v in zip(out_names[1:], want[1:], strict=True)}
        mine = {n.replace("state_out", "state_in"): v for n, v in zip(out_names[1:], got[1:], strict=True)}
    return vfy.CheckResult(name, "litert", worst, tol, f"{tokens}-token stream, state fed back, vs ONNX Runtime")


def verify_tflite(folder: Path, graph: bytes, vocab_size: int, tol: float, tokens: int = STREAM) -> vfy.CheckResult:
    """The .tflite in `folder` (sidecar beside it) in LiteRT against ONNX Runtime on `graph`."""
    if not rt._probe().ok:
        raise DependencyError(f"the LiteRT runtime is needed to verify the .tflite; {rt.HINT}")
    session = rt.LiteRtSession(folder / "step.tflite", threads=1)
    return stream_check(session, vfy.session(graph), vocab_size, tokens, tol, "litert_vs_ort")


def export_litert(
    step: onnx.ModelProto, parallel: bytes, ref: vfy.Reference, verified: bool
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(files under litert/ keyed by path relative to the export folder, the manifest's `litert` section).

    VerificationError when the mobile graph or the .tflite disagrees; nothing is written then."""
    base, counts = mobile.build(step)
    checks = mobile.verify(ref, parallel, base.SerializeToString()) if verified else []
    model = int64_copy(base)
    graph = model.SerializeToString()
    with tempfile.TemporaryDirectory(prefix="rnnedge-litert-") as tmp:
        work = Path(tmp)
        (work / "step.onnx").write_bytes(graph)
        report = run_converter(work / "step.onnx", work / "out")
        tflite = (work / "out" / "step.tflite").read_bytes()
        car = sidecar(model, tflite)
        flex = [op for op in car["ops"] if op.upper().startswith(("FLEX", "CUSTOM"))]
        if flex:
            raise GraphError(f"the .tflite is not built-ins only: {', '.join(flex)}")
        (work / "out" / "step.json").write_text(json.dumps(car))
        if verified:
            vocab = int(model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value)
            checks.append(verify_tflite(work / "out", graph, vocab, ref.tolerance))
    failed = [c for c in checks if not c.passed]
    if failed:
        worst = ", ".join(f"{c.name} {c.max_abs_diff:.3g}" for c in failed)
        raise VerificationError(f"the LiteRT step graph failed verification, nothing written: {worst}")
    car["verification"] = [c.to_dict() for c in checks]
    car["converter"] = report.get("versions", {})
    files = {"step.onnx": graph, "step.tflite": tflite, "step.json": (json.dumps(car, indent=1) + "\n").encode()}
    section = {
        "folder": LITERT_DIR,
        "files": sorted(files),
        "tflite": {"size_bytes": len(tflite), "sha256": car["sha256"], "ops": car["ops"]},
        "ids_dtype": car["ids_dtype"],
        "rewrites": counts,
        "converter": car["converter"],
        "verification": car["verification"],
    }
    return {f"{LITERT_DIR}/{name}": blob for name, blob in files.items()}, section
