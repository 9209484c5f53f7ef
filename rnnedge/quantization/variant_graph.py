"""One graph's variant, built and checked: loss delta on held-out text, the loss budget, sensitivity.

Every variant must load with its metadata, keep the fp32 I/O signature (dtypes may change only where
the recipe says so), give finite outputs, and keep its state outputs float unless the recipe
quantizes the state. Its held-out loss is measured next to the fp32 graph's; with a budget, the most
sensitive nodes are kept float until the delta holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from rnnedge.errors import VerificationError
from rnnedge.graphmeta import graph_file
from rnnedge.inference import GraphSession
from rnnedge.quantization import loss
from rnnedge.quantization.builder import VariantBuilder, stamp
from rnnedge.quantization.checks import (
    finite_problems,
    quantized_state_outputs,
    signature_problems,
    tensorrt_report,
)
from rnnedge.quantization.sensitivity import fit_budget, rank_nodes
from rnnedge.quantization.texts import Texts

SLICE_CHARS = 4000  # held-out characters per sensitivity evaluation
Log = Callable[[str], None]


@dataclass(frozen=True)
class BuiltGraph:
    """A checked variant graph (serialized, with its final metadata) and its manifest entry."""

    kind: str
    file: str
    data: bytes
    report: dict[str, Any]


def check_variant(builder: VariantBuilder, fp32: GraphSession, data: bytes, ids: Any) -> GraphSession:
    """Open the variant and run every check; VerificationError listing all problems."""
    variant = loss.open_checked(data, builder.info.kind)
    problems = signature_problems(fp32, variant, io_float16=builder.changes_io_dtype)
    problems += finite_problems(variant, ids)
    if builder.recipe.keeps_state_float:
        problems += [
            f"{o} is produced by DequantizeLinear"
            for o in quantized_state_outputs(onnx.load_from_string(data), variant)
        ]
    if problems:
        raise VerificationError(
            f"{builder.recipe.name} {builder.info.kind} graph failed its checks: {'; '.join(problems)}"
        )
    return variant


def build_graph(
    builder: VariantBuilder,
    fp32: GraphSession,
    fp32_path: Path,
    texts: Texts,
    keep: list[str],
    *,
    max_loss_delta: float | None,
    sensitivity: bool,
    say: Log,
) -> BuiltGraph:
    """Build, check and measure one graph's variant; keep nodes float to meet `max_loss_delta`."""
    kind, name = builder.info.kind, builder.recipe.name
    eval_ids = texts.eval_ids
    loss_fp32 = loss.held_out_loss(fp32, eval_ids)
    data = builder.build(keep)
    delta = loss.held_out_loss(check_variant(builder, fp32, data, eval_ids), eval_ids) - loss_fp32
    say(f"{kind}: fp32 {loss_fp32:.4f} nats/char, {name} delta {delta:+.5f}")
    extra: dict[str, Any] = {}
    added: list[str] = []
    if max_loss_delta is not None and delta > max_loss_delta:
        say(f"{kind}: delta {delta:+.5f} > budget {max_loss_delta}; keeping sensitive nodes float")
        slice_ids = eval_ids[:SLICE_CHARS]
        loss_slice = loss.held_out_loss(fp32, slice_ids)
        keep, added, delta, ranked = fit_budget(
            builder, eval_ids, slice_ids, loss_fp32, loss_slice, max_loss_delta, keep, say
        )
        extra["sensitivity"] = [s.to_dict() for s in ranked]
        data = builder.build(keep)
        check_variant(builder, fp32, data, eval_ids)
    elif sensitivity:
        slice_ids = eval_ids[:SLICE_CHARS]
        _, ranked = rank_nodes(builder, slice_ids, loss.held_out_loss(fp32, slice_ids), keep, say)
        extra["sensitivity"] = [s.to_dict() for s in ranked]
    what = {
        **builder.describe(keep),
        "kept_float_by_budget": added,
        "loss_fp32": round(loss_fp32, 6),
        "loss_variant": round(loss_fp32 + delta, 6),
        "loss_delta": round(delta, 6),
        "eval_chars": len(eval_ids),
        "eval_source": texts.eval_source,
        "calib_source": texts.calib_source if builder.recipe.needs_calibration else None,
    }
    model = onnx.load_from_string(data)
    data = stamp(model, builder.variant_info(what))
    trt = tensorrt_report(model)
    if kind in builder.tensorrt_graphs and not trt["rules_ok"]:
        raise VerificationError(f"{kind} {name} graph is not TensorRT-compatible: {'; '.join(trt['problems'][:3])}")
    size_fp32 = fp32_path.stat().st_size
    file = graph_file(kind, name)
    report = {
        "file": file,
        **what,
        **extra,
        "size_fp32": size_fp32,
        "size_variant": len(data),
        "size_ratio": round(len(data) / size_fp32, 4),
        "tensorrt": trt,
    }
    return BuiltGraph(kind, file, data, report)
