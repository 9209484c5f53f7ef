"""export_model: checkpoint -> verified parallel.onnx + step.onnx + manifest.json (nothing written on failure)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnx

from rnnedge import __version__
from rnnedge.errors import GraphError, RnnedgeError
from rnnedge.exporter import simplify as simp
from rnnedge.exporter import trace
from rnnedge.exporter import verify as vfy
from rnnedge.graphmeta import GRAPH_FILES, INPUT_IDS, INT8_FILES, LOGITS, MANIFEST, GraphInfo, states_for
from rnnedge.io import atomic_path, write_json
from rnnedge.models import CharLM
from rnnedge.training.checkpoint import Checkpoint, load_checkpoint
from rnnedge.vocab import CharVocab

MANIFEST_FORMAT = "rnnedge-export"
ORT_DERIVED = ("parallel.ort", "step.ort", "required_operators.config")


@dataclass
class ExportResult:
    out_dir: Path
    paths: dict[str, Path]
    manifest: dict[str, Any]
    checks: list[vfy.CheckResult] = field(default_factory=list)


def op_types(model: onnx.ModelProto) -> dict[str, int]:
    """Op type -> count, sorted by op type."""
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def _annotate(model: onnx.ModelProto, lm: CharLM, kind: str) -> None:
    """Give every graph input/output its documented shape: batch/time symbolic, widths fixed."""
    cfg = lm.config
    widths = {s.input: s.width for s in states_for(cfg.state_spec())}
    widths.update({s.output: s.width for s in states_for(cfg.state_spec())})
    for value in [*model.graph.input, *model.graph.output]:
        if value.name == INPUT_IDS:
            dims: list[str | int] = ["batch", "time"] if kind == "parallel" else ["batch"]
        elif value.name == LOGITS:
            dims = ["batch", "time", cfg.vocab_size] if kind == "parallel" else ["batch", cfg.vocab_size]
        else:
            dims = ["batch", widths[value.name]]
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            if isinstance(d, str):
                shape.dim.add().dim_param = d
            else:
                shape.dim.add().dim_value = d


def _finish(model: onnx.ModelProto, info: GraphInfo) -> bytes:
    """Attach metadata, run the full checker, serialize."""
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, info.to_metadata())
    model.producer_name = "rnnedge"
    model.producer_version = __version__
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise GraphError(f"exported {info.kind} graph fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    return model.SerializeToString()


def _load(ckpt: str | os.PathLike[str] | Checkpoint) -> Checkpoint:
    return ckpt if isinstance(ckpt, Checkpoint) else load_checkpoint(ckpt)


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


def _graph_entry(kind: str, model: onnx.ModelProto, data: bytes, opset: int, seconds: float) -> dict[str, Any]:
    return {
        "file": GRAPH_FILES[kind],
        "opset": opset,
        "nodes": len(model.graph.node),
        "op_types": op_types(model),
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "export_seconds": round(seconds, 3),
    }


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
) -> ExportResult:
    """Export a checkpoint to out_dir/{parallel,step}.onnx + manifest.json, verified before writing."""
    return _export(ckpt, out_dir, opset, max_seq_len, simplify, ort_format, verify, simplifier, checks)


def _export(
    ckpt: str | os.PathLike[str] | Checkpoint,
    out_dir_arg: str | os.PathLike[str],
    opset: int,
    max_seq_len: int,
    simplify: bool,
    ort_format: bool,
    do_verify: bool,
    simplifier: simp.Simplifier | None,
    checks: Sequence[vfy.Check] | None,
) -> ExportResult:
    trace.check_opset(opset)
    levels = trace.levels_for(max_seq_len)
    out_dir = Path(out_dir_arg)
    loaded = _load(ckpt)
    lm, vocab = loaded.model.eval(), loaded.vocab
    created = _probe_out_dir(out_dir)
    try:
        return _build(
            loaded, lm, vocab, out_dir, opset, max_seq_len, levels, simplify, ort_format, do_verify, simplifier, checks
        )
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only succeeds while empty: never removes anything we did not create
        raise


def _build(
    loaded: Checkpoint,
    lm: CharLM,
    vocab: CharVocab,
    out_dir: Path,
    opset: int,
    max_seq_len: int,
    levels: int,
    simplify: bool,
    ort_format: bool,
    do_verify: bool,
    simplifier: simp.Simplifier | None,
    checks: Sequence[vfy.Check] | None,
) -> ExportResult:
    cfg = lm.config
    states = states_for(cfg.state_spec())
    infos = {
        "parallel": GraphInfo("parallel", vocab, cfg.to_dict(), states, __version__, max_seq_len=max_seq_len),
        "step": GraphInfo("step", vocab, cfg.to_dict(), states, __version__),
    }
    models: dict[str, onnx.ModelProto] = {}
    seconds: dict[str, float] = {}
    for kind in ("parallel", "step"):
        t0 = time.perf_counter()
        raw = trace.trace_parallel(lm, opset, levels) if kind == "parallel" else trace.trace_step(lm, opset)
        model = onnx.load_from_string(raw)
        _annotate(model, lm, kind)
        models[kind] = model
        seconds[kind] = time.perf_counter() - t0
    data = {k: _finish(m, infos[k]) for k, m in models.items()}
    nodes_before = {k: len(m.graph.node) for k, m in models.items()}

    ref = vfy.Reference(lm)
    results: list[vfy.CheckResult] = []
    if do_verify:
        results = vfy.verify_graphs(ref, data["parallel"], data["step"], checks)
        vfy.raise_if_failed(results, "exported")
    decisions: dict[str, dict[str, Any]] = {k: {"applied": False, "reason": "disabled (--no-simplify)"} for k in data}
    if simplify:
        for kind in ("parallel", "step"):
            t0 = time.perf_counter()
            cand = simp.try_simplify(models[kind], simplifier)
            if cand.model is None:
                decisions[kind] = {"applied": False, "reason": cand.reason}
                seconds[kind] += time.perf_counter() - t0
                continue
            _annotate(cand.model, lm, kind)
            trial = dict(data)
            try:
                trial[kind] = _finish(cand.model, infos[kind])
            except GraphError as exc:
                decisions[kind] = {"applied": False, "reason": f"simplified graph fails onnx.checker: {exc}"}
                continue
            trial_results = vfy.verify_graphs(ref, trial["parallel"], trial["step"], checks) if do_verify else []
            seconds[kind] += time.perf_counter() - t0
            failed = [r for r in trial_results if not r.passed]
            if failed:
                worst = ", ".join(f"{r.name} {r.max_abs_diff:.3g}" for r in failed)
                decisions[kind] = {"applied": False, "reason": f"simplified graph failed verification: {worst}"}
                continue
            decisions[kind] = {"applied": True, "reason": "smaller and verified"}
            models[kind], data = cand.model, trial
            if do_verify:
                results = trial_results

    manifest = _manifest(
        loaded, lm, opset, max_seq_len, levels, models, data, seconds, nodes_before, decisions, results, do_verify
    )
    paths = {k: out_dir / GRAPH_FILES[k] for k in data}
    extra: dict[Path, bytes] = {}
    if ort_format:
        from rnnedge.exporter.ortformat import convert_to_ort

        ort_files, manifest["ort_format"] = convert_to_ort(data)
        extra = {out_dir / name: blob for name, blob in ort_files.items()}
    _write_all(out_dir, {**{paths[k]: data[k] for k in data}, **extra}, manifest)
    return ExportResult(out_dir, paths, manifest, results)


def _write_all(out_dir: Path, files: dict[Path, bytes], manifest: dict[str, Any]) -> None:
    """Write every file to a temp name, rename all into place, manifest last; drop stale int8 graphs."""
    with contextlib.ExitStack() as stack:
        for target, blob in files.items():
            tmp = stack.enter_context(atomic_path(target))
            tmp.write_bytes(blob)
    # Files derived from an earlier export of this folder would no longer match the new graphs.
    derived = [*INT8_FILES.values(), *ORT_DERIVED]
    stale = [out_dir / n for n in derived if (out_dir / n).exists() and out_dir / n not in files]
    for path in stale:
        path.unlink()
    if stale:
        manifest["removed_stale"] = [p.name for p in stale]
    write_json(out_dir / MANIFEST, manifest)


def _manifest(
    loaded: Checkpoint,
    lm: CharLM,
    opset: int,
    max_seq_len: int,
    levels: int,
    models: dict[str, onnx.ModelProto],
    data: dict[str, bytes],
    seconds: dict[str, float],
    nodes_before: dict[str, int],
    decisions: dict[str, dict[str, Any]],
    results: list[vfy.CheckResult],
    verified: bool,
) -> dict[str, Any]:
    from rnnedge.exporter.tensorrt import check_tensorrt

    graphs = {}
    for kind, model in models.items():
        entry = _graph_entry(kind, model, data[kind], opset, seconds[kind])
        entry["nodes_before_simplify"] = nodes_before[kind]
        entry["nodes_after_simplify"] = len(model.graph.node)
        entry["simplified"] = decisions[kind]
        entry["verification"] = {r.name: r.max_abs_diff for r in results if kind in r.graph.split("+")}
        graphs[kind] = entry
    problems = check_tensorrt(models["parallel"])
    return {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "rnnedge_version": __version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": {
            "checkpoint": str(loaded.path),
            "val_loss": loaded.val_loss,
            "arch": lm.config.arch,
            "config": lm.config.to_dict(),
            "params": lm.num_params(),
        },
        "opset": opset,
        "max_seq_len": max_seq_len,
        "scan_levels": levels,
        "graphs": graphs,
        "verification": {
            "run": verified,
            "passed": verified and all(r.passed for r in results),
            "provider": "CPUExecutionProvider",
            "tolerance": vfy.TOLERANCE,
            "checks": [r.to_dict() for r in results],
        },
        "tensorrt": {
            "graph": "parallel",
            "ok": not problems,
            "problems": problems,
            "note": "static check against TensorRT 10 ONNX-parser rules; no TensorRT run",
        },
    }
