"""export_model: checkpoint -> verified parallel.onnx + step.onnx + manifest.json (nothing written on failure).

Order: validate options -> load checkpoint -> probe the output folder -> trace both graphs -> attach
metadata + full onnx.checker -> verify in ONNX Runtime -> simplify each graph and re-verify (keep the
original when anything is off) -> optional .ort conversion -> write all files via temp + rename.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from rnnedge import __version__, ownership
from rnnedge.errors import GraphError, RnnedgeError
from rnnedge.exporter import mobile, trace
from rnnedge.exporter import simplify as simp
from rnnedge.exporter import verify as vfy
from rnnedge.exporter.manifest import GraphRecord, build_manifest, write_export
from rnnedge.exporter.mobile_ops import set_ids_dtype
from rnnedge.exporter.portable import check_metadata, portable
from rnnedge.graphmeta import IDS_DTYPES, INPUT_IDS, LOGITS, GraphInfo, graph_file
from rnnedge.models import CharLM
from rnnedge.training.checkpoint import Checkpoint, load_checkpoint


@dataclass
class ExportResult:
    out_dir: Path
    paths: dict[str, Path]
    manifest: dict[str, Any]
    checks: list[vfy.CheckResult] = field(default_factory=list)


def export_model(
    ckpt: str | os.PathLike[str] | Checkpoint,
    out_dir: str | os.PathLike[str],
    *,
    opset: int = 17,
    max_seq_len: int = 65536,
    simplify: bool = True,
    ort_format: bool = False,
    verify: bool = True,
    simplifier: simp.Simplifier | None = None,
    checks: Sequence[vfy.Check] | None = None,
    target: str = "default",
    batch: int = 1,
    overwrite: bool = False,
    ids: str | None = None,
) -> ExportResult:
    """Export a checkpoint (folder or Checkpoint) to out_dir/{parallel,step}.onnx + manifest.json.

    `target="mobile"` adds out_dir/mobile/ (exporter/mobile.py): a fixed-shape step graph for
    ONNX Runtime's NNAPI/CoreML EPs, its .ort file and operator config, verified the same way.
    `target="qnn-htp"` adds out_dir/qnn-htp/ (exporter/qnn_htp.py): a step graph with `batch` fixed
    that Qualcomm's HTP runs whole (no Erf, no scalar-base Pow), verified the same way.
    `ids` ('int64' | 'int32'; None: each graph's own) is the token ids' dtype of the target's graphs:
    step.onnx and parallel.onnx for 'default' (int64), mobile/step.onnx (int32), qnn-htp/step.onnx (int64).
    `target="litert"` adds out_dir/litert/ (exporter/litert.py): the mobile graph as a built-ins-only
    .tflite with its sidecar JSON, verified in LiteRT against ONNX Runtime.

    Every check runs in ONNX Runtime before anything is written; on failure a VerificationError lists
    each check with its max abs difference and out_dir is left as it was. `simplifier` and `checks`
    replace onnxsim and the default checks (for tests). A non-empty `out_dir` without rnnedge's ledger
    is refused unless `overwrite` (rnnedge/ownership.py).
    """
    trace.check_opset(opset)
    mobile.check_target(target)
    if target == "qnn-htp":
        from rnnedge.exporter.qnn_htp import check_batch

        check_batch(batch)
    elif batch != 1:
        raise RnnedgeError(f"--batch {batch} applies to --target qnn-htp (the mobile graph's batch is 1)")
    if ids is not None and ids not in IDS_DTYPES:
        raise RnnedgeError(f"--ids must be one of {', '.join(IDS_DTYPES)}, got {ids!r}")
    levels = trace.levels_for(max_seq_len)
    out = Path(out_dir)
    loaded = ckpt if isinstance(ckpt, Checkpoint) else load_checkpoint(ckpt)
    return _guarded(
        loaded, out, opset, max_seq_len, levels, simplify, ort_format, verify, simplifier, checks, target, None, None,
        batch, overwrite=overwrite, ids=ids,
    )  # fmt: skip


def export_checked(
    loaded: Checkpoint,
    out_dir: str | os.PathLike[str],
    *,
    opset: int = 17,
    max_seq_len: int = 65536,
    simplify: bool = True,
    ort_format: bool = False,
    extra_files: dict[str, bytes] | None = None,
    source: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """The same export for any model that follows the recurrent-LM protocol (exporter/protocol.py;
    rnnedge.byom wraps user modules into it): `loaded.model` has `config` (arch, vocab_size, state_infos(),
    to_dict(), weight_products(), atol), `init_state(batch)` and `forward(ids, state) -> (logits, state)`.
    `extra_files` (name -> bytes, e.g. the tokenizer) are written next to the graphs in the same
    all-or-nothing step; `source` is merged into the manifest's source."""
    trace.check_opset(opset)
    levels = trace.levels_for(max_seq_len)
    out = Path(out_dir)
    return _guarded(
        loaded,
        out,
        opset,
        max_seq_len,
        levels,
        simplify,
        ort_format,
        True,
        None,
        None,
        "default",
        extra_files,
        source,
        overwrite=overwrite,
    )


def _guarded(
    loaded: Checkpoint, out: Path, *args: Any, overwrite: bool = False, ids: str | None = None
) -> ExportResult:
    ownership.check_folder(out, overwrite=overwrite)  # one line before the long work
    created = _probe_out_dir(out)
    try:
        options: dict[str, Any] = {"overwrite": overwrite, "ids": ids}  # keywords after the positional *args
        return _export(loaded, out, *args, **options)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only succeeds while empty: never removes anything we did not create
        raise


def _probe_out_dir(out_dir: Path) -> bool:
    """Make sure we can write into out_dir (creating it); return True when we created it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise RnnedgeError(f"output path {out_dir} exists and is not a folder")
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rnnedge-probe.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RnnedgeError(f"cannot write to output folder {out_dir}: {exc.strerror or exc}") from exc
    return created


def _annotate(model: onnx.ModelProto, lm: CharLM, kind: str) -> None:
    """Give every graph input/output its documented shape: batch/time symbolic, every other dim fixed."""
    cfg = lm.config
    shapes = {n: s.shape for s in cfg.state_infos() for n in (s.input, s.output)}
    for value in [*model.graph.input, *model.graph.output]:
        if value.name == INPUT_IDS:
            dims: list[str | int] = ["batch", "time"] if kind == "parallel" else ["batch"]
        elif value.name == LOGITS:
            dims = ["batch", "time", cfg.vocab_size] if kind == "parallel" else ["batch", cfg.vocab_size]
        else:
            dims = list(shapes[value.name])
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            if isinstance(d, str):
                shape.dim.add().dim_param = d
            else:
                shape.dim.add().dim_value = d


def _finish(model: onnx.ModelProto, info: GraphInfo) -> bytes:
    """Make the graph portable (portable.py: scan shifts as Pad + Slice, no value_info), give input_ids the
    dtype the metadata records, attach metadata, run onnx.checker's full check and check the metadata
    against the graph's I/O, serialize."""
    set_ids_dtype(model, info.ids_dtype or "int64")
    portable(model)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, info.to_metadata())
    model.producer_name, model.producer_version = "rnnedge", __version__
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise GraphError(f"exported {info.kind} graph fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    check_metadata(model, info.kind)
    return model.SerializeToString()


def _export(
    loaded: Checkpoint,
    out_dir: Path,
    opset: int,
    max_seq_len: int,
    levels: int,
    simplify: bool,
    ort_format: bool,
    do_verify: bool,
    simplifier: simp.Simplifier | None,
    checks: Sequence[vfy.Check] | None,
    target: str,
    extra_files: dict[str, bytes] | None = None,
    source: dict[str, Any] | None = None,
    batch: int = 1,
    overwrite: bool = False,
    ids: str | None = None,
) -> ExportResult:
    start = time.perf_counter()
    lm = loaded.model.eval()
    cfg, states = lm.config, lm.config.state_infos()
    own = (ids or "int64") if target == "default" else "int64"  # --ids is the target's graphs' choice
    infos = {
        "parallel": GraphInfo(
            "parallel", loaded.vocab, cfg.to_dict(), states, __version__, max_seq_len=max_seq_len, ids_dtype=own
        ),
        "step": GraphInfo(
            "step", loaded.vocab, cfg.to_dict(), states, __version__, matmuls=cfg.weight_products(), ids_dtype=own
        ),
    }
    recs: dict[str, GraphRecord] = {}
    for kind in ("parallel", "step"):
        t0 = time.perf_counter()
        raw = trace.trace_parallel(lm, opset, levels) if kind == "parallel" else trace.trace_step(lm, opset)
        model = onnx.load_from_string(raw)
        _annotate(model, lm, kind)
        data = _finish(model, infos[kind])
        recs[kind] = GraphRecord(kind, model, data, len(model.graph.node), time.perf_counter() - t0)
    timings = {"trace": sum(r.trace_seconds for r in recs.values())}

    ref = vfy.Reference(lm, max_seq_len)
    t0 = time.perf_counter()
    results = vfy.verify_graphs(ref, recs["parallel"].data, recs["step"].data, checks) if do_verify else []
    vfy.raise_if_failed(results, "exported")
    timings["verify"] = time.perf_counter() - t0
    for kind in ("parallel", "step"):
        if simplify:
            results = _simplify_one(recs, kind, infos[kind], lm, ref, simplifier, checks, do_verify, results)
        else:
            recs[kind].simplified = {"applied": False, "reason": "disabled (simplify=False / --no-simplify)"}
    timings["simplify_and_reverify"] = sum(r.simplify_seconds for r in recs.values())
    providers = vfy.check_accelerated_providers(ref, recs["parallel"].data) if do_verify else {}

    paths = {k: out_dir / graph_file(k) for k in recs}
    files = {paths[k]: recs[k].data for k in recs}
    files.update({out_dir / name: blob for name, blob in (extra_files or {}).items()})
    ort_entry = None
    if ort_format:
        from rnnedge.ortformat import convert_to_ort

        t0 = time.perf_counter()
        ort_files, ort_entry = convert_to_ort({k: r.data for k, r in recs.items()})
        files.update({out_dir / name: blob for name, blob in ort_files.items()})
        timings["ort_format"] = time.perf_counter() - t0
    mobile_entry = None
    if target == "mobile":
        t0 = time.perf_counter()
        mobile_files, mobile_entry = mobile.export_mobile(
            recs["step"].model, recs["parallel"].data, ref, do_verify, ids or mobile.IDS
        )
        files.update({out_dir / name: blob for name, blob in mobile_files.items()})
        timings["mobile"] = time.perf_counter() - t0
    htp_entry = None
    if target == "qnn-htp":
        from rnnedge.exporter.qnn_htp import export_htp

        t0 = time.perf_counter()
        htp_files, htp_entry = export_htp(
            recs["step"].model, recs["parallel"].data, ref, do_verify, batch, ids or "int64"
        )
        files.update({out_dir / name: blob for name, blob in htp_files.items()})
        timings["qnn_htp"] = time.perf_counter() - t0
    litert_entry = None
    if target == "litert":
        from rnnedge.exporter.litert import export_litert

        t0 = time.perf_counter()
        litert_files, litert_entry = export_litert(recs["step"].model, recs["parallel"].data, ref, do_verify)
        files.update({out_dir / name: blob for name, blob in litert_files.items()})
        timings["litert"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    manifest = build_manifest(loaded, opset, max_seq_len, levels, recs, results, do_verify, timings, providers)
    if source is not None:
        manifest["source"] = {**manifest["source"], **source}
    if extra_files:
        manifest["files"] = sorted(extra_files)
    if ort_entry is not None:
        manifest["ort_format"] = ort_entry
    if mobile_entry is not None:
        manifest["mobile"] = mobile_entry
    if htp_entry is not None:
        manifest["qnn_htp"] = htp_entry
    if litert_entry is not None:
        manifest["litert"] = litert_entry
    write_export(out_dir, files, manifest, overwrite=overwrite)
    return ExportResult(out_dir, paths, manifest, results)


def _simplify_one(
    recs: dict[str, GraphRecord],
    kind: str,
    info: GraphInfo,
    lm: CharLM,
    ref: vfy.Reference,
    simplifier: simp.Simplifier | None,
    checks: Sequence[vfy.Check] | None,
    do_verify: bool,
    results: list[vfy.CheckResult],
) -> list[vfy.CheckResult]:
    """Try the simplifier on one graph; adopt it only if it passes every check. Returns the current results."""
    rec = recs[kind]
    t0 = time.perf_counter()
    try:
        cand = simp.try_simplify(rec.model, simplifier, kind)
        if cand.model is None:
            rec.simplified = {"applied": False, "reason": cand.reason}
            return results
        _annotate(cand.model, lm, kind)
        try:
            data = _finish(cand.model, info)
        except GraphError as exc:
            rec.simplified = {"applied": False, "reason": f"simplified graph fails onnx.checker: {exc}"}
            return results
        if not do_verify:
            rec.model, rec.data = cand.model, data
            rec.simplified = {"applied": True, "reason": "smaller (not verified: verify=False)"}
            return results
        trial = {k: (data if k == kind else r.data) for k, r in recs.items()}
        try:
            trial_results = vfy.verify_graphs(ref, trial["parallel"], trial["step"], checks)
        except GraphError as exc:
            rec.simplified = {"applied": False, "reason": f"simplified graph does not load: {exc}"}
            return results
        failed = [r for r in trial_results if not r.passed]
        if failed:
            worst = ", ".join(f"{r.name} {r.max_abs_diff:.3g}" for r in failed)
            rec.simplified = {"applied": False, "reason": f"simplified graph failed verification: {worst}"}
            return results
        rec.model, rec.data = cand.model, data
        after = len(cand.model.graph.node)
        rec.simplified = {"applied": True, "reason": f"{rec.nodes_before} -> {after} nodes, all checks pass"}
        return trial_results
    finally:
        rec.simplify_seconds += time.perf_counter() - t0
