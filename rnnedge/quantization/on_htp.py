"""A qnn-htp variant checked where it runs, before it is written: on Qualcomm's HTP simulator.

1. The step variant runs `verify_steps` steps of held-out text (one stream from the zero state, the
   state fed back) on the HTP, with CPU fallback off, next to the fp32 graph and the same QDQ graph
   on the CPU EP: NLL of each, top-1 agreement and max logit difference against both.
2. The clip rate: held-out text through the fp32 graph (CPU, all streams), and at every step each
   state input is compared with the range its QuantizeLinear represents; how often a state leaves
   its calibrated range (steps, elements, per state).
3. The context binary an app ships: the HTP's compiled graph (`ep.context_enable=1`, embed mode 1)
   as `step.<variant>.ctx.onnx`, reloaded and checked to give the same outputs as the variant.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from rnnedge.errors import VerificationError
from rnnedge.inference import GraphSession, open_graph, streams_of
from rnnedge.inference.nll import nll
from rnnedge.quantization import loss
from rnnedge.quantization.methods.qnn import state_ranges
from rnnedge.quantization.recipes import Recipe
from rnnedge.targets import where
from rnnedge.targets.qnn_htp import open_session

Log = Callable[[str], None]
CTX_SUFFIX = ".ctx.onnx"


def context_file(variant: str) -> str:
    """The context binary's file name next to `step.<variant>.onnx`."""
    return f"step.{variant}{CTX_SUFFIX}"


def _run(graphs: list[GraphSession], ids: np.ndarray) -> list[np.ndarray]:
    """Each graph's logits (T-1, V) over ids (T,), one stream from the zero state, the state fed back."""
    outs = []
    for g in graphs:
        state, rows = g.zero_states(1), []
        for t in range(len(ids) - 1):
            logits, state = g.run(ids[t : t + 1], state)  # (1, V)
            rows.append(logits[0])
        outs.append(np.stack(rows))  # (T-1, V)
    return outs


def _compare(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {
        "top1_agreement": round(float((a.argmax(-1) == b.argmax(-1)).mean()), 4),
        "max_abs_logit_diff": round(float(np.abs(a.astype(np.float64) - b).max()), 5),
    }


def clip_rate(model: onnx.ModelProto, fp32: GraphSession, ids: np.ndarray, streams: int = 8) -> dict[str, Any]:
    """How often held-out states (fp32, `streams` streams of ids (N,)) leave the variant's state ranges."""
    ranges = state_ranges(model, fp32.info.states)
    if not ranges:
        return {"measured": False, "reason": "no state input is quantized"}
    batch = streams_of(ids, streams)  # (B, L)
    names = fp32.state_inputs
    state = fp32.zero_states(batch.shape[0])
    steps_out = 0
    elems_out = dict.fromkeys(ranges, 0)
    worst = dict.fromkeys(ranges, 0.0)
    for t in range(batch.shape[1] - 1):
        _, state = fp32.run(batch[:, t], state)
        left = False
        for name, s in zip(names, state, strict=True):
            if name not in ranges:
                continue
            lo, hi = ranges[name]
            outside = (s < lo) | (s > hi)
            elems_out[name] += int(outside.sum())
            worst[name] = max(worst[name], float(max(lo - s.min(), s.max() - hi, 0.0)))
            left = left or bool(outside.any())
        steps_out += left
    steps = batch.shape[1] - 1
    per_state = {
        n: {
            "range": [round(ranges[n][0], 5), round(ranges[n][1], 5)],
            "elements_clipped_share": elems_out[n] / max(1, steps * batch.shape[0] * int(np.prod(state[i].shape[1:]))),
            "worst_excess": round(worst[n], 5),
        }
        for i, n in enumerate(names)
        if n in ranges
    }
    return {
        "measured": True,
        "steps": steps,
        "streams": int(batch.shape[0]),
        "steps_with_a_clip": steps_out,
        "step_clip_rate": round(steps_out / max(1, steps), 5),
        "states": per_state,
    }


def verify_on_htp(
    recipe: Recipe, data: bytes, fp32: GraphSession, ids: np.ndarray, max_loss_delta: float | None, say: Log
) -> tuple[dict[str, Any], bytes | None]:
    """The checks above: (the report's `htp` entry, the context binary's bytes or None when not run)."""
    steps = int(getattr(recipe, "verify_steps", 0))
    report: dict[str, Any] = {"target": where("qnn-htp")}
    model = onnx.load_from_string(data)
    report["state_clip"] = clip_rate(model, fp32, ids)
    if report["state_clip"]["measured"]:
        c = report["state_clip"]
        say(
            f"state clip rate on held-out text: {c['steps_with_a_clip']} of {c['steps']} steps ({c['streams']} streams)"
        )
    if steps == 0:
        report["verified"] = False
        return report, None
    window = np.ascontiguousarray(ids[: steps + 1])  # (T,)
    on_htp = open_graph(data, "step", "qnn-htp", threads=1)
    cpu_qdq = loss.open_checked(data, "step")
    htp, ref, qdq = _run([on_htp, fp32, cpu_qdq], window)
    targets = window[1:]
    losses = {k: float(nll(v, targets).mean()) for k, v in (("fp32", ref), ("htp", htp), ("cpu_qdq", qdq))}
    report.update(
        {
            "verified": True,
            "steps": len(targets),
            "nll_fp32": round(losses["fp32"], 6),
            "nll_htp": round(losses["htp"], 6),
            "nll_cpu_same_graph": round(losses["cpu_qdq"], 6),
            "loss_delta": round(losses["htp"] - losses["fp32"], 6),
            "vs_fp32": _compare(htp, ref),
            "vs_cpu_same_graph": _compare(htp, qdq),
        }
    )
    say(
        f"step on qnn-htp ({len(targets)} steps): delta {report['loss_delta']:+.5f} vs fp32, top-1 "
        f"{100 * report['vs_fp32']['top1_agreement']:.1f}% (vs the same graph on the CPU EP: "
        f"{100 * report['vs_cpu_same_graph']['top1_agreement']:.1f}%)"
    )
    if not np.all(np.isfinite(htp)):
        raise VerificationError(f"{recipe.name} gives non-finite logits on the HTP; nothing was written")
    if max_loss_delta is not None and report["loss_delta"] > max_loss_delta:
        raise VerificationError(
            f"the step variant's loss delta on qnn-htp is {report['loss_delta']:+.5f} > budget {max_loss_delta}; "
            "nothing was written"
        )
    ctx = context_binary(data, window[: min(len(window), 9)], say)
    report["context_binary"] = {"checked_steps": min(len(window), 9) - 1, "embed_mode": 1, "size_bytes": len(ctx)}
    return report, ctx


def context_binary(data: bytes, ids: np.ndarray, say: Log) -> bytes:
    """The HTP context binary of `data` (embed mode 1: one .onnx file), reloaded and checked on ids (T,)."""
    with tempfile.TemporaryDirectory(prefix="rnnedge-qnn-ctx-") as tmp:
        src, ctx = Path(tmp, "step.onnx"), Path(tmp, "step_ctx.onnx")
        src.write_bytes(data)
        config = {"ep.context_enable": "1", "ep.context_file_path": str(ctx), "ep.context_embed_mode": "1"}
        first = open_session(str(src), threads=1, config=config)
        del first
        if not ctx.is_file():
            raise VerificationError("the QNN EP wrote no context binary (ep.context_enable=1)")
        blob = ctx.read_bytes()
        check_context(data, blob, ids)
    say(f"context binary: {len(blob) / 1e3:.0f} kB, reloaded on the HTP, same outputs")
    return blob


def check_context(data: bytes, blob: bytes, ids: np.ndarray) -> None:
    """VerificationError unless the context binary `blob` gives the variant's outputs on the HTP for ids (T,)."""
    variant = open_graph(data, "step", "qnn-htp", threads=1)
    a = open_session(blob, threads=1, fp16=False)  # compiled: the precision is in the binary
    names_in = [i.name for i in a.get_inputs()]
    names_out = [o.name for o in a.get_outputs()]
    state_v = variant.zero_states(1)
    state_c = [s.copy() for s in state_v]
    for t in range(len(ids) - 1):
        want, state_v = variant.run(ids[t : t + 1], state_v)
        feed = dict(zip(variant.state_inputs, state_c, strict=True))
        feed["input_ids"] = np.ascontiguousarray(ids[t : t + 1], dtype=variant.ids_dtype)
        out = dict(zip(names_out, a.run(None, {k: feed[k] for k in names_in}), strict=True))
        got = out[variant.outputs[0]]
        state_c = [out[o] for o in variant.outputs[1:]]
        if not np.allclose(got, want, atol=1e-5, rtol=0):
            raise VerificationError(
                f"the context binary differs from the variant on the HTP at step {t} "
                f"(max {float(np.abs(got - want).max()):.3g}); nothing was written"
            )
