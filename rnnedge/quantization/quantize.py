"""`quantize_export`: int8 versions of an export folder's step and parallel graphs, checked before written.

- step graph: dynamic (weights int8, activations quantized on the fly) or static QDQ, calibrated on
  real text fed through the step graph timestep by timestep (calibrate.py).
- parallel graph: always static QDQ with symmetric int8 (zero point 0) so TensorRT can parse it;
  dynamic quantization's DynamicQuantizeLinear/MatMulInteger are not TensorRT ops.
- only MatMul/Gemm/embedding-Gather nodes are quantized: recurrent state outputs stay float, so the
  state is never clipped to a calibrated range (`quantize_state=True` is the counter-example).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnedge.errors import GraphError, RnnedgeError, VerificationError
from rnnedge.graphmeta import GRAPH_FILES, GRAPH_KINDS, INT8_FILES, MANIFEST, GraphInfo
from rnnedge.io import read_json, write_bytes, write_json
from rnnedge.quantization.calibrate import encode_text, parallel_feeds, read_text, step_feeds
from rnnedge.quantization.checks import (
    finite_problems,
    quantized_state_outputs,
    signature_problems,
    tensorrt_check,
)
from rnnedge.quantization.q_build import CALIB_METHODS, GraphBuilder, with_metadata
from rnnedge.quantization.q_run import (
    graph_info,
    graph_loss,
    load_proto,
    match_patterns,
    name_nodes,
    refuse_quantized,
    session,
)
from rnnedge.quantization.sensitivity import fit_budget, rank_nodes
from rnnedge.vocab import OnUnknown

EVAL_FRACTION = 0.1  # held-out tail of the calibration text when no --eval is given
SLICE_CHARS = 4000  # held-out characters per sensitivity evaluation


@dataclass
class QuantizeResult:
    """What `quantize_export` wrote: paths per graph and the manifest's `int8` section."""

    paths: dict[str, Path]
    manifest: dict[str, Any]
    graphs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _load_inputs(folder: Path, graphs: tuple[str, ...]) -> dict[str, tuple[Any, GraphInfo]]:
    if not folder.is_dir():
        raise GraphError(f"export folder not found: {folder}")
    missing = [GRAPH_FILES[g] for g in graphs if not (folder / GRAPH_FILES[g]).is_file()]
    if missing:
        raise GraphError(f"{folder} has no {', '.join(missing)} (run `rnnedge export` first)")
    loaded = {}
    for g in graphs:
        path = folder / GRAPH_FILES[g]
        proto = load_proto(path)
        info = graph_info(proto, str(path))
        if info.kind != g:
            raise GraphError(f"{path} says it is a {info.kind!r} graph")
        refuse_quantized(proto, info, str(path))
        name_nodes(proto)
        loaded[g] = (proto, info)
    infos = [i for _, i in loaded.values()]
    if any(i.vocab != infos[0].vocab or i.config != infos[0].config for i in infos):
        raise GraphError(f"{folder}: step.onnx and parallel.onnx come from different models")
    return loaded


def quantize_export(
    folder: str | os.PathLike[str],
    *,
    method: str = "dynamic",
    calib_text: str | os.PathLike[str] | None = None,
    calib_method: str = "minmax",
    per_channel: bool = False,
    keep_float: tuple[str, ...] | list[str] = (),
    quantize_state: bool = False,
    max_loss_delta: float | None = None,
    eval_text: str | os.PathLike[str] | None = None,
    calib_steps: int = 512,
    graphs: tuple[str, ...] = GRAPH_KINDS,
    on_unknown: str = "error",
    sensitivity: bool = False,
    log: Callable[[str], None] | None = None,
) -> QuantizeResult:
    """Write `step.int8.onnx` / `parallel.int8.onnx` beside the fp32 graphs of an export folder.

    Text: calibration uses `calib_text` (a path); the held-out check uses `eval_text`, else the last 10%
    of the calibration text. Without `calib_text`, `eval_text` serves both. One of them is required.
    Every int8 graph must load, keep the fp32 I/O signature, give finite outputs and keep state outputs
    float; its held-out loss delta is measured and, with `max_loss_delta`, the most sensitive nodes are
    kept float until it holds. Nothing is written unless every graph passes.
    """
    folder = Path(folder)
    if method not in ("dynamic", "static"):
        raise RnnedgeError(f"--method must be dynamic or static, not {method!r}")
    if calib_method not in CALIB_METHODS:
        raise RnnedgeError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, not {calib_method!r}")
    if on_unknown not in ("error", "skip"):
        raise RnnedgeError(f"--on-unknown must be error or skip, not {on_unknown!r}")
    bad = [g for g in graphs if g not in GRAPH_KINDS]
    if bad or not graphs:
        raise RnnedgeError(f"graphs must be among {GRAPH_KINDS}, got {list(graphs)}")
    if method == "static" and calib_text is None:
        raise RnnedgeError("static quantization needs calibration text: pass --calib PATH")
    if quantize_state and method != "static":
        raise RnnedgeError("--quantize-state needs --method static (dynamic quantization has no state ranges)")
    if max_loss_delta is not None and not max_loss_delta >= 0:
        raise RnnedgeError(f"--max-loss-delta must be >= 0, got {max_loss_delta}")
    loaded = _load_inputs(folder, graphs)
    vocab = next(iter(loaded.values()))[1].vocab
    say = log or (lambda _m: None)

    # Text: calibration ids and held-out ids (read before any work, so bad text fails fast).
    if calib_text is None and eval_text is None:
        raise RnnedgeError("quantize needs real text to check the int8 loss: pass --calib PATH and/or --eval PATH")
    unk: OnUnknown = "skip" if on_unknown == "skip" else "error"
    calib_ids = eval_ids = None
    if calib_text is not None:
        calib_ids = encode_text(read_text(calib_text), vocab, unk, f"calibration text {calib_text}")
    if eval_text is not None:
        eval_ids = encode_text(read_text(eval_text, "eval text"), vocab, unk, f"eval text {eval_text}")
    elif calib_ids is not None:
        cut = int(len(calib_ids) * (1 - EVAL_FRACTION))
        calib_ids, eval_ids = calib_ids[:cut], calib_ids[cut:]
    if calib_ids is None:
        calib_ids = eval_ids
    assert calib_ids is not None and eval_ids is not None
    slice_ids = eval_ids[:SLICE_CHARS]

    user_keep = tuple(keep_float)
    with tempfile.TemporaryDirectory(prefix="rnnedge-quant-") as tmp:
        workdir = Path(tmp)
        builders = {}
        for g, (proto, info) in loaded.items():
            static = g == "parallel" or method == "static"
            builders[g] = GraphBuilder(
                proto,
                info,
                workdir,
                static=static,
                calib_method=calib_method,
                per_channel=per_channel,
                quantize_state=quantize_state,
            )
        all_candidates = [c for b in builders.values() for c in b.candidates]
        all_labels = {k: v for b in builders.values() for k, v in b.labels.items()}
        unmatched = [p for p, hits in match_patterns(user_keep, all_candidates, all_labels).items() if not hits]
        if unmatched:
            raise RnnedgeError(
                f"--keep-float {', '.join(unmatched)} matches no quantizable node; "
                f"candidates: {', '.join(sorted({all_labels[c] for c in all_candidates})[:12])}..."
            )
        outputs: dict[str, bytes] = {}
        reports: dict[str, dict[str, Any]] = {}
        for g, builder in builders.items():
            proto, info = loaded[g]
            fp32_path = folder / GRAPH_FILES[g]
            if builder.static:
                say(f"calibrating {g} graph on {len(calib_ids)} characters ({calib_method})")
                if g == "step":
                    builder.feeds = step_feeds(fp32_path, info, calib_ids, steps=calib_steps)
                else:
                    # Histogram calibrators (entropy, percentile) need every feed of one shape.
                    lengths = (16, 64, 256) if calib_method == "minmax" else (128,)
                    builder.feeds = parallel_feeds(fp32_path, info, calib_ids, lengths=lengths, per_length=4)
            keep = sorted(
                {n for hits in match_patterns(user_keep, builder.candidates, builder.labels).values() for n in hits}
            )
            loss_fp32 = graph_loss(fp32_path, info, eval_ids)
            data = builder.build(keep)
            _check(data, info, fp32_path, eval_ids, quantize_state)
            delta = graph_loss(data, info, eval_ids) - loss_fp32
            say(f"{g}: fp32 {loss_fp32:.4f} nats/char, int8 delta {delta:+.5f}")
            report: dict[str, Any] = {}
            added: list[str] = []
            if max_loss_delta is not None and delta > max_loss_delta:
                say(f"{g}: delta {delta:+.5f} > budget {max_loss_delta}; keeping sensitive nodes float")
                loss_slice = graph_loss(fp32_path, info, slice_ids)
                keep, added, delta, ranked = fit_budget(
                    builder, eval_ids, slice_ids, loss_fp32, loss_slice, max_loss_delta, keep, say
                )
                report["sensitivity"] = [s.to_dict() for s in ranked]
                data = builder.build(keep)
                _check(data, info, fp32_path, eval_ids, quantize_state)
            elif sensitivity:
                loss_slice = graph_loss(fp32_path, info, slice_ids)
                _, ranked = rank_nodes(builder, slice_ids, loss_slice, keep, say)
                report["sensitivity"] = [s.to_dict() for s in ranked]
            desc = builder.describe(keep)
            desc.update(
                loss_fp32=round(loss_fp32, 6),
                loss_int8=round(loss_fp32 + delta, 6),
                loss_delta=round(delta, 6),
                kept_float_by_budget=added,
                eval_chars=len(eval_ids),
            )
            data = with_metadata(data, builder.fp32_meta, desc)
            trt = tensorrt_check(_proto(data))
            if g == "parallel" and not trt["structural_ok"]:
                raise VerificationError(f"parallel int8 graph is not TensorRT-compatible: {trt['problems']}")
            size_fp32 = fp32_path.stat().st_size
            report = {
                "file": INT8_FILES[g],
                **desc,
                **report,
                "size_fp32": size_fp32,
                "size_int8": len(data),
                "size_ratio": round(len(data) / size_fp32, 4),
                "tensorrt": trt,
            }
            outputs[g], reports[g] = data, report

    # Every graph passed: write them, then the manifest.
    paths = {}
    for g, data in outputs.items():
        paths[g] = folder / INT8_FILES[g]
        write_bytes(paths[g], data)
    section = {
        "method": method,
        "calib_method": calib_method,
        "per_channel": per_channel,
        "quantize_state": quantize_state,
        "keep_float": list(user_keep),
        "max_loss_delta": max_loss_delta,
        "calib_chars": len(calib_ids),
        "eval_chars": len(eval_ids),
        "graphs": reports,
    }
    manifest_path = folder / MANIFEST
    manifest = read_json(manifest_path, "manifest") if manifest_path.is_file() else {}
    if not isinstance(manifest, dict):
        raise RnnedgeError(f"{manifest_path} is not a JSON object")
    old = manifest.get("int8")
    old = old if isinstance(old, dict) else {}
    section["graphs"] = {**old.get("graphs", {}), **reports}  # a graph not re-quantized keeps its entry
    manifest["int8"] = section
    write_json(manifest_path, manifest)
    return QuantizeResult(paths=paths, manifest=section, graphs=reports)


def _proto(data: bytes) -> Any:
    import onnx

    return onnx.load_from_string(data)


def _check(data: bytes, info: GraphInfo, fp32_path: Path, ids: Any, quantize_state: bool) -> None:
    """Loads, same I/O signature as fp32, finite outputs, state outputs float (unless asked)."""
    sess = session(data)
    problems = signature_problems(session(fp32_path), sess) + finite_problems(sess, info, ids)
    if not quantize_state:
        problems += [f"{o} is produced by DequantizeLinear" for o in quantized_state_outputs(_proto(data), info)]
    if problems:
        raise VerificationError(f"{info.kind} int8 graph failed its checks: {'; '.join(problems)}")
