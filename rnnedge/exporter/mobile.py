"""The mobile export target: a step graph for ONNX Runtime's NNAPI (Android) and CoreML (iOS) EPs.

    export_model(ckpt, out, target="mobile")      # rnnedge export CKPT --out OUT --target mobile

writes, next to the usual graphs, the folder `mobile/`:

    mobile/step.onnx                  batch fixed to 1 everywhere, `input_ids` int32 [1] (`--ids int64`:
                                      int64, for a converter such as onnx2tf), states [1, ...]
    mobile/step.ort                   the same graph in ORT format (runtime-optimization style)
    mobile/required_operators.config  ops for a reduced ONNX Runtime build (every graph in mobile/)

The graph is the lean step graph (lean.py) rewritten into the ops NNAPI and both CoreML formats list
(mobile_ops.py), metadata as step.onnx plus `rnnedge.target = mobile`, with what is fixed said as it is
(`rnnedge.states` [1, ...], `rnnedge.fixed_batch` 1, `rnnedge.ids_dtype`). Before anything is written it
is checked against PyTorch (fp64, batch 1) and, token by token, against the verified parallel graph,
at the exporter's tolerance; ORT's mobile usability checker then estimates its NNAPI/CoreML
partitions, and the manifest's `mobile` section records those figures. A precision variant made
later from mobile/step.onnx goes beside it as `mobile/step.<variant>.onnx`; `package(export_dir)`
then rebuilds the .ort files, the operator config (covering every variant) and the figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import onnx

from rnnedge.errors import GraphError, RnnedgeError, VerificationError
from rnnedge.exporter import verify as vfy
from rnnedge.exporter.lean import LeanError, lean_step
from rnnedge.exporter.mobile_ops import MobileError, fix_batch, set_ids_dtype, to_mobile_ops
from rnnedge.exporter.peephole import PeepholeError
from rnnedge.exporter.portable import check_metadata
from rnnedge.exporter.simplify import onnxsim_simplify
from rnnedge.graphio import fixed_shape_metadata
from rnnedge.graphmeta import MANIFEST, graph_file, list_variants
from rnnedge.io import read_json, write_bytes, write_json
from rnnedge.ortformat import CONFIG_NAME, convert_to_ort

MOBILE_DIR = "mobile"
TARGETS = ("default", "mobile", "qnn-htp", "litert")
TARGET_KEY = "rnnedge.target"
EPS = ("NNAPI", "CoreML MLProgram", "CoreML NeuralNetwork")
IDS = "int32"  # the mobile graph's default ids dtype: NNAPI's Gather takes int32 indices from a graph input


def check_target(target: str) -> str:
    """`target` if it is an export target ('default' | 'mobile' | 'qnn-htp' | 'litert'); RnnedgeError otherwise."""
    if target not in TARGETS:
        raise RnnedgeError(f"unknown export target {target!r}; choose one of {', '.join(TARGETS)}")
    return target


def build(step: onnx.ModelProto, ids: str = IDS) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The mobile graph for an exported step graph (metadata kept, fixed shapes and `ids` said as they
    are) and the count of each rewrite."""
    try:
        model = lean_step(onnxsim_simplify(step))
        fix_batch(model)
        model = onnxsim_simplify(model)  # with every shape fixed, shape arithmetic folds to constants
        counts = to_mobile_ops(model)
        counts["ids_casts"] = set_ids_dtype(model, ids)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (LeanError, MobileError, PeepholeError, onnx.shape_inference.InferenceError) as exc:
        raise GraphError(f"cannot make the mobile step graph: {exc}") from exc
    except Exception as exc:  # onnxsim is third-party code
        raise GraphError(f"cannot make the mobile step graph: {type(exc).__name__}: {exc}") from exc
    dynamic = [v.name for v in model.graph.value_info if not _fixed(v)]
    if dynamic:
        raise GraphError(f"mobile step graph still has values without a fixed shape: {', '.join(dynamic[:5])}")
    del model.metadata_props[:]
    meta = fixed_shape_metadata({p.key: p.value for p in step.metadata_props}, 1, ids)
    onnx.helper.set_model_props(model, {**meta, TARGET_KEY: "mobile"})
    onnx.checker.check_model(model, full_check=True)
    check_metadata(model, "mobile step")
    return model, counts


def _fixed(value: onnx.ValueInfoProto) -> bool:
    dims = value.type.tensor_type.shape.dim
    return all(d.HasField("dim_value") and d.dim_value > 0 for d in dims)


def verify(ref: vfy.Reference, parallel: bytes, mobile: bytes, step_tokens: int = 1000) -> list[vfy.CheckResult]:
    """The mobile graph against PyTorch (fp64, batch 1, random states) and the parallel graph."""
    par = vfy.session(parallel)
    mob = vfy.session(mobile)  # vfy.run feeds the ids in the graph's dtype
    gen = vfy.Inputs(ref.model, seed=11)
    worst = 0.0
    for _ in range(3):
        ids, state = gen.ids(1, 1), gen.state(1)
        want = ref.torch(ids, state)
        got = vfy.run(mob, ids[:, 0], state)
        worst = max(worst, vfy._diff(got, [want[0][:, 0], *want[1:]]))
    torch_check = vfy.CheckResult("mobile_vs_torch_fp64", "mobile", worst, ref.tolerance, "batch 1, 3 draws")
    chain = vfy.check_step_vs_parallel(ref, par, mob, step_tokens)
    chain = vfy.CheckResult("mobile_vs_parallel", "mobile+parallel", chain.max_abs_diff, chain.tolerance, chain.detail)
    return [torch_check, chain]


_PARTITIONS = re.compile(r"(\d+) partitions with a total of (\d+)/(\d+) nodes can be handled by the (.+) EP\.")


def usability(graph: bytes) -> dict[str, Any]:
    """ORT's mobile usability checker on a graph: per EP, its partitions and supported nodes.

    Runs onnxruntime.tools.mobile_helpers.usability_checker.analyze_model (what
    `python -m onnxruntime.tools.check_onnx_model_mobile_usability` runs) and parses its log."""
    from onnxruntime.tools.mobile_helpers import usability_checker

    logger = logging.getLogger("rnnedge.mobile_checker")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    logger.addHandler(handler)
    try:
        with tempfile.TemporaryDirectory(prefix="rnnedge-mobile-") as tmp:
            path = Path(tmp, "step.onnx")
            path.write_bytes(graph)
            with contextlib.redirect_stdout(io.StringIO()):
                usability_checker.analyze_model(path, skip_optimize=False, logger=logger)
    finally:
        logger.removeHandler(handler)
    return parse_usability(text.getvalue())


def parse_usability(log: str) -> dict[str, Any]:
    """The figures of each EP's first block in the checker's log (the graph as it is)."""
    blocks = re.split(r"^Checking (NNAPI|CoreML NeuralNetwork|CoreML MLProgram)$", log, flags=re.M)
    out: dict[str, Any] = {}
    for ep, body in zip(blocks[1::2], blocks[2::2], strict=True):
        match = _PARTITIONS.search(body)
        if match is None:
            raise GraphError(f"cannot read ORT's mobile checker output for {ep}")
        partitions, supported, nodes = (int(g) for g in match.groups()[:3])
        sizes = re.search(r"Partition sizes: \[([\d, ]*)\]", body[match.end() :])
        unsupported = re.search(r"Unsupported ops: (\S+)", body[match.end() :].split("Model should perform")[0])
        verdict = re.search(r"Model should perform well with .+ as is: (\w+)", body)
        part_sizes = [int(s) for s in sizes.group(1).split(",") if s.strip()] if sizes else []
        out[ep] = {
            "nodes": nodes,
            "supported_nodes": supported,
            "partitions": partitions,
            "partition_sizes": part_sizes,
            "largest_partition_share": round(max(part_sizes, default=0) / nodes, 4) if nodes else 0.0,
            "unsupported_ops": unsupported.group(1).split(",") if unsupported else [],
            "verdict": verdict.group(1) if verdict else "?",
        }
    missing = [ep for ep in EPS if ep not in out]
    if missing:
        raise GraphError(f"ORT's mobile checker reported nothing for {', '.join(missing)}")
    return out


def graph_entry(model: onnx.ModelProto, data: bytes) -> dict[str, Any]:
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    inputs = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*model.graph.input, *model.graph.output]
    }
    return {
        "nodes": len(model.graph.node),
        "op_types": dict(sorted(ops.items())),
        "io_shapes": inputs,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def make_files(graphs: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """{variant: onnx bytes} of the mobile folder -> ({file name: bytes}, section of the manifest):
    the .onnx and .ort files, one operator config covering all of them, and the checker's figures."""
    named = {graph_file("step", v).removesuffix(".onnx"): data for v, data in graphs.items()}
    ort_files, ort_entry = convert_to_ort(named, style="runtime")
    files = {f"{name}.onnx": data for name, data in named.items()} | ort_files
    checker = {variant: usability(data) for variant, data in graphs.items()}
    return files, {"folder": MOBILE_DIR, "files": sorted(files), "ort_format": ort_entry, "checker": checker}


def stale_files(out_dir: Path) -> list[Path]:
    """Every file rnnedge writes in out_dir/mobile (a re-export replaces or removes them all)."""
    folder = out_dir / MOBILE_DIR
    paths = [p for kinds in list_variants(folder).values() for p in kinds.values()]
    paths += [p.with_suffix(".ort") for p in paths if p.with_suffix(".ort").exists()]
    return paths + ([folder / CONFIG_NAME] if (folder / CONFIG_NAME).exists() else [])


def package(export_dir: str | Path) -> dict[str, Any]:
    """Re-make mobile/'s .ort files and operator config from every graph there (fp32 and any variant,
    e.g. a QDQ int8 `step.int8-qdq.onnx`), re-run the checker, and update the manifest's `mobile`."""
    out = Path(export_dir)
    folder = out / MOBILE_DIR
    variants = {v: kinds["step"] for v, kinds in list_variants(folder).items() if "step" in kinds}
    if "fp32" not in variants:
        raise RnnedgeError(f"{folder} holds no step.onnx (export with --target mobile first)")
    manifest = read_json(out / MANIFEST, "manifest")
    files, section = make_files({v: p.read_bytes() for v, p in variants.items()})
    for name, blob in files.items():
        if not name.endswith(".onnx"):
            write_bytes(folder / name, blob)
    manifest["mobile"] = {**manifest.get("mobile", {}), **section}
    write_json(out / MANIFEST, manifest)
    return manifest["mobile"]


def export_mobile(
    step: onnx.ModelProto, parallel: bytes, ref: vfy.Reference, verified: bool, ids: str = IDS
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(files under mobile/ keyed by path relative to the export folder, the manifest's `mobile` section).

    VerificationError when the mobile graph disagrees with PyTorch or the parallel graph."""
    model, counts = build(step, ids)
    data = model.SerializeToString()
    checks = verify(ref, parallel, data) if verified else []
    failed = [c for c in checks if not c.passed]
    if failed:
        worst = ", ".join(f"{c.name} {c.max_abs_diff:.3g}" for c in failed)
        raise VerificationError(f"the mobile step graph failed verification, nothing written: {worst}")
    files, section = make_files({"fp32": data})
    section = {
        **section,
        "graph": graph_entry(model, data),
        "rewrites": counts,
        "verification": [c.to_dict() for c in checks],
    }
    return {f"{MOBILE_DIR}/{name}": blob for name, blob in files.items()}, section
