"""`rnnedge quantize DIR --method NAME`: a precision variant of an export folder (onnx/onnxruntime imported lazily).

Options that change the recipe (`--per-channel`, `--calib-steps`, `--bits`, ...) are passed to it as
recipe options: unset ones keep the preset's value, and one the recipe does not take is one clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from rnnedge._cli.common import domain_errors, echo
from rnnedge.threads import THREADS_HELP, resolve_threads


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)


def _report_lines(result: Any) -> list[str]:
    """One line per graph, each figure saying which characters it is on."""
    from rnnedge.quantization.variant_graph import SLICE_CHARS

    lines = []
    for kind, r in result.graphs.items():
        kept = ", ".join(r.get("kept_float_labels") or r["kept_float"]) or "none"
        trt = "ok" if r["tensorrt"]["ok"] else "no"
        lines.append(
            f"{r['file']}: {r['format']}, {r['size_variant'] / 1e3:.0f} kB ({r['size_ratio']:.2f}x fp32), "
            f"loss {r['loss_fp32']:.4f} -> {r['loss_variant']:.4f} nats/char ({r['loss_delta']:+.5f}) "
            f"on {r.get('eval_chars', 0):,} held-out chars, "
            f"kept float: {kept}, TensorRT: {trt}"
        )
        host = (r.get("verified_on") or [{}])[0]
        if host:
            cpu = host.get("cpu", host["device"])
            lines.append(f"  verified on {host['target']}: {cpu}; int8: {host['int8_path']}")
        for name, t in r.get("targets", {}).items():
            lines.append(
                f"  on {name} ({t.get('cpu', t['device'])}): loss delta {t['loss_delta']:+.5f} "
                f"(host {t['loss_delta_host_same_chars']:+.5f} on the same {t['eval_chars']:,} chars)"
            )
        for s in r.get("sensitivity", [])[:5]:
            lines.append(
                f"  sensitivity {kind}: {s['group']}: kept float -> delta {s['delta_kept_float']:+.5f} "
                f"on the first {SLICE_CHARS:,} held-out chars"
            )
    return lines


def _folder_target(folder: Path) -> str | None:
    """The `target` a target's own export folder records in its manifest (qnn-htp/manifest.json), if any."""
    import json

    try:
        data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # a damaged manifest: quantize refuses it in one line later
        return None
    return data.get("target") if isinstance(data, dict) and isinstance(data.get("target"), str) else None


@domain_errors
def quantize(
    folder: Path = typer.Argument(..., help="Export folder holding step.onnx and parallel.onnx."),
    method: str | None = typer.Option(
        None,
        "--method",
        help="Recipe: int8-dynamic (the default), int8-qdq, fp16, int8-weight or int4-weight (aliases: dynamic, "
        "static); for an export made with --target qnn-htp: a16w8, a8w8 or htp-fp16 (written to DIR/qnn-htp/; "
        "a16w8 is the default when DIR is that folder).",
    ),
    eval_text: Path | None = typer.Option(None, "--eval", help="Held-out text for the loss check."),
    calib: Path | None = typer.Option(
        None, "--calib", help="Calibration text (int8-qdq); alone, its last 10% is held out for the loss check."
    ),
    calib_method: str | None = typer.Option(None, "--calib-method", help="int8-qdq: minmax, entropy or percentile."),
    calib_steps: int | None = typer.Option(
        None, "--calib-steps", help="int8-qdq, a16w8, a8w8: step-graph timesteps calibrated (per stream)."
    ),
    per_channel: bool | None = typer.Option(
        None, "--per-channel/--per-tensor", help="int8 recipes: per-channel weight scales."
    ),
    reduce_range: bool | None = typer.Option(
        None, "--reduce-range/--full-range", help="int8 recipes: 7-bit weights (int8-qdq's default) or 8-bit."
    ),
    weight_type: str | None = typer.Option(
        None, "--weight-type", help="int8-dynamic: uint8 (default, exact on every CPU) or int8 (symmetric)."
    ),
    quantize_state: bool | None = typer.Option(
        None, "--quantize-state", help="int8-qdq: also quantize the ops producing the state (counter-example)."
    ),
    quantize_embedding: bool | None = typer.Option(
        None, "--quantize-embedding/--float-embedding", help="int8-qdq: quantize the embedding lookup too."
    ),
    keep_io_types: bool | None = typer.Option(
        None, "--keep-io-types/--fp16-io", help="fp16: keep inputs, outputs and state float32 (default) or not."
    ),
    bits: int | None = typer.Option(None, "--bits", help="Weight-only recipes: 4 or 8."),
    block_size: int | None = typer.Option(None, "--block-size", help="Weight-only recipes: block size (16-256)."),
    keep_float: list[str] = typer.Option(
        [],
        "--keep-float",
        help="Parameter path glob (e.g. 'blocks.0.mixer.*', 'head') or node name to keep fp32 (repeatable).",
    ),
    graphs: str | None = typer.Option(None, "--graphs", help="Which graphs (default both): step,parallel."),
    max_loss_delta: float | None = typer.Option(
        None,
        "--max-loss-delta",
        help="Keep the most sensitive nodes float until the loss delta holds (an error if only all-float would).",
    ),
    on_unknown: str = typer.Option("error", "--on-unknown", help="Unknown characters in text: error or skip."),
    sensitivity: bool = typer.Option(False, "--sensitivity", help="Rank nodes by leave-one-out loss delta."),
    verify_on: str | None = typer.Option(
        None,
        "--verify-on",
        help="Also check the step variant on these CPU targets, e.g. cpu-arm64,cpu-x86-avx2 (emulated; "
        "`rnnedge targets`). The host CPU is always checked; the manifest records each.",
    ),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
) -> None:
    """Write a precision variant (<graph>.<method>.onnx) of an export folder, checked on held-out text first."""
    from rnnedge.progress import Stages
    from rnnedge.quantization import quantize_export

    options = {
        "calib_method": calib_method,
        "calib_steps": calib_steps,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "weight_type": weight_type,
        "quantize_state": quantize_state,
        "quantize_embedding": quantize_embedding,
        "keep_io_types": keep_io_types,
        "bits": bits,
        "block_size": block_size,
        "keep_float": tuple(keep_float) or None,
        "graphs": tuple(g.strip() for g in graphs.split(",") if g.strip()) if graphs is not None else None,
    }
    if method is None:  # the target's first recipe in its own folder (DIR/qnn-htp), else int8-dynamic
        method = "a16w8" if _folder_target(folder) == "qnn-htp" else "int8-dynamic"
    with Stages("quantize", lines=False) as stages:  # a bar on a terminal; the log lines are the stages
        result = quantize_export(
            folder,
            method,
            calib_text=calib,
            eval_text=eval_text,
            max_loss_delta=max_loss_delta,
            sensitivity=sensitivity,
            on_unknown=on_unknown,
            verify_on_targets=tuple(t.strip() for t in (verify_on or "").split(",") if t.strip()),
            log=stages.say,
            threads=resolve_threads(threads),
            **options,
        )
    for line in _report_lines(result):
        echo(line)
    written = [*result.paths.values(), *result.extra_files]
    where = written[0].parent if written else folder  # DIR/qnn-htp for the qnn-htp recipes
    echo(f"wrote {', '.join(p.name for p in written)} in {where}; manifest variants[{result.variant}] updated")
