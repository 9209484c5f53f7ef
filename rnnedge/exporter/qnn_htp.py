"""The qnn-htp export target: a step graph Qualcomm's HTP (Hexagon NPU) runs whole through the QNN EP.

    export_model(ckpt, out, target="qnn-htp")     # rnnedge export CKPT --out OUT --target qnn-htp

writes, next to the usual graphs, the folder `qnn-htp/`:

    qnn-htp/step.onnx        the lean step graph, batch fixed (1 by default), opset 20: exact GELU as one
                             `Gelu` op (QNN refuses Erf), no scalar-base Pow (qnn_htp_graph.py)
    qnn-htp/manifest.json    the folder's own manifest: `rnnedge quantize` writes its variants there
                             (`step.a16w8.onnx`, ...) and `rnnedge drift/eval --provider qnn-htp` reads it

Before anything is written the graph is checked against PyTorch (fp64, batch N) and, token by token,
against the verified parallel graph, at the exporter's tolerance, on the CPU EP. The float graph itself
does not run on the HTP (an integer accelerator): its variants do (quantization/methods/qnn.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import onnx

from rnnedge import __version__
from rnnedge.errors import GraphError, RnnedgeError, VerificationError
from rnnedge.exporter import verify as vfy
from rnnedge.exporter.lean import LeanError, lean_step
from rnnedge.exporter.mobile_ops import MobileError, fix_batch, set_ids_dtype
from rnnedge.exporter.peephole import PeepholeError
from rnnedge.exporter.portable import check_metadata
from rnnedge.exporter.qnn_htp_graph import HtpGraphError, to_htp_ops
from rnnedge.exporter.simplify import onnxsim_simplify
from rnnedge.graphio import fixed_shape_metadata
from rnnedge.graphmeta import MANIFEST, list_variants
from rnnedge.io import json_text

HTP_DIR = "qnn-htp"
TARGET = "qnn-htp"
TARGET_KEY = "rnnedge.target"
IDS = "int64"  # the HTP graph's default ids dtype (`--ids int32` for a runtime that wants 32-bit indices)


def check_batch(batch: int) -> int:
    """`batch` if it is a positive integer (the fixed batch of the HTP graph); RnnedgeError otherwise."""
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 64:
        raise RnnedgeError(f"--batch must be an integer in 1..64 (the HTP graph's fixed batch), got {batch!r}")
    return batch


def build(step: onnx.ModelProto, batch: int = 1, ids: str = IDS) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The HTP graph for an exported step graph (metadata kept, plus the target; the fixed batch and the
    `ids` dtype said as they are) and each rewrite's count."""
    try:
        model = lean_step(onnxsim_simplify(step))
        fix_batch(model, batch)
        model = onnxsim_simplify(model)  # with every shape fixed, shape arithmetic folds to constants
        model, counts = to_htp_ops(model)
        counts["ids_casts"] = set_ids_dtype(model, ids)
        model = onnxsim_simplify(model)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (LeanError, MobileError, PeepholeError, HtpGraphError, onnx.shape_inference.InferenceError) as exc:
        raise GraphError(f"cannot make the qnn-htp step graph: {exc}") from exc
    except Exception as exc:  # onnxsim is third-party code
        raise GraphError(f"cannot make the qnn-htp step graph: {type(exc).__name__}: {exc}") from exc
    del model.metadata_props[:]
    meta = fixed_shape_metadata({p.key: p.value for p in step.metadata_props}, batch, ids)
    onnx.helper.set_model_props(model, {**meta, TARGET_KEY: TARGET})
    model.producer_name, model.producer_version = "rnnedge", __version__
    onnx.checker.check_model(model, full_check=True)
    check_metadata(model, "qnn-htp step")
    return model, counts


def verify(
    ref: vfy.Reference, parallel: bytes, graph: bytes, batch: int = 1, step_tokens: int = 1000
) -> list[vfy.CheckResult]:
    """The HTP graph on the CPU EP against PyTorch (fp64, batch N, random states) and the parallel graph."""
    par, htp = vfy.session(parallel), vfy.session(graph)
    gen = vfy.Inputs(ref.model, seed=13)
    worst = 0.0
    for _ in range(3):
        ids, state = gen.ids(batch, 1), gen.state(batch)
        want = ref.torch(ids, state)
        worst = max(worst, vfy._diff(vfy.run(htp, ids[:, 0], state), [want[0][:, 0], *want[1:]]))
    torch_check = vfy.CheckResult("qnn_htp_vs_torch_fp64", "qnn-htp", worst, ref.tolerance, f"batch {batch}, 3 draws")
    if batch == 1:
        chain = vfy.check_step_vs_parallel(ref, par, htp, step_tokens)
        chain = vfy.CheckResult(
            "qnn_htp_vs_parallel", "qnn-htp+parallel", chain.max_abs_diff, chain.tolerance, chain.detail
        )
        return [torch_check, chain]
    return [torch_check]


def graph_entry(model: onnx.ModelProto, data: bytes) -> dict[str, Any]:
    """Nodes, op types, I/O shapes, size and hash of the HTP graph (the manifest's record)."""
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*model.graph.input, *model.graph.output]
    }
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "file": "step.onnx",
        "nodes": len(model.graph.node),
        "opset": opset,
        "op_types": dict(sorted(ops.items())),
        "io_shapes": shapes,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def export_htp(
    step: onnx.ModelProto, parallel: bytes, ref: vfy.Reference, verified: bool, batch: int = 1, ids: str = IDS
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(files under qnn-htp/ keyed by path relative to the export folder, the manifest's `qnn_htp` section).

    VerificationError when the HTP graph disagrees with PyTorch or the parallel graph."""
    check_batch(batch)
    model, counts = build(step, batch, ids)
    data = model.SerializeToString()
    checks = verify(ref, parallel, data, batch) if verified else []
    failed = [c for c in checks if not c.passed]
    if failed:
        worst = ", ".join(f"{c.name} {c.max_abs_diff:.3g}" for c in failed)
        raise VerificationError(f"the qnn-htp step graph failed verification, nothing written: {worst}")
    section = {
        "folder": HTP_DIR,
        "batch": batch,
        "graph": graph_entry(model, data),
        "rewrites": counts,
        "verification": [c.to_dict() for c in checks],
        "runs_on": "Qualcomm's HTP simulator (onnxruntime-qnn), not a phone: see docs/targets.md",
    }
    sub = {
        "format": "rnnedge-export",
        "target": TARGET,
        "rnnedge_version": __version__,
        "graphs": {"step": section["graph"]},
        "batch": batch,
        "verification": section["verification"],
    }
    files = {f"{HTP_DIR}/step.onnx": data, f"{HTP_DIR}/{MANIFEST}": json_text(sub).encode("utf-8")}
    return files, section


def stale_files(out_dir: Path) -> list[Path]:
    """Every file rnnedge writes in out_dir/qnn-htp (graphs, variants, context binaries, its manifest):
    a re-export replaces or removes them all, so no variant of an older model stays beside the new graph."""
    folder = out_dir / HTP_DIR
    paths = [p for kinds in list_variants(folder).values() for p in kinds.values()]
    paths += sorted(folder.glob("step.*.ctx.onnx")) if folder.is_dir() else []
    return paths + ([folder / MANIFEST] if (folder / MANIFEST).is_file() else [])
