"""`rnnedge quantize`: int8 step and parallel graphs beside the fp32 ones (onnx/onnxruntime imported lazily)."""

from __future__ import annotations

from pathlib import Path

import typer

from rnnedge._cli.common import domain_errors, echo


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)


@domain_errors
def quantize(
    folder: Path = typer.Argument(..., help="Export folder holding step.onnx and parallel.onnx."),
    method: str = typer.Option("dynamic", "--method", help="Step graph: dynamic or static (QDQ)."),
    calib: Path | None = typer.Option(None, "--calib", help="Calibration text (required for static)."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax, entropy or percentile."),
    per_channel: bool = typer.Option(False, "--per-channel", help="Per-channel weight scales."),
    keep_float: list[str] = typer.Option([], "--keep-float", help="Node name or glob to keep fp32 (repeatable)."),
    quantize_state: bool = typer.Option(
        False, "--quantize-state", help="Also quantize the ops producing recurrent state (counter-example)."
    ),
    max_loss_delta: float | None = typer.Option(
        None, "--max-loss-delta", help="Keep the most sensitive nodes float until the loss delta holds."
    ),
    eval_text: Path | None = typer.Option(
        None, "--eval", help="Held-out text for the loss check (default: last 10% of --calib)."
    ),
    calib_steps: int = typer.Option(512, "--calib-steps", help="Step-graph timesteps run for calibration."),
    graphs: str = typer.Option("step,parallel", "--graphs", help="Which graphs: step,parallel."),
    on_unknown: str = typer.Option("error", "--on-unknown", help="Unknown characters in text: error or skip."),
    sensitivity: bool = typer.Option(False, "--sensitivity", help="Rank nodes by leave-one-out loss delta."),
) -> None:
    """Quantize an export folder to int8; each graph is checked on held-out text before it is written."""
    from rnnedge.quantization import quantize_export

    result = quantize_export(
        folder,
        method=method,
        calib_text=calib,
        calib_method=calib_method,
        per_channel=per_channel,
        keep_float=tuple(keep_float),
        quantize_state=quantize_state,
        max_loss_delta=max_loss_delta,
        eval_text=eval_text,
        calib_steps=calib_steps,
        graphs=tuple(g.strip() for g in graphs.split(",") if g),
        on_unknown=on_unknown,
        sensitivity=sensitivity,
        log=echo,
    )
    for g, r in result.graphs.items():
        kept = ", ".join(r.get("kept_float_labels") or r["kept_float"]) or "none"
        echo(
            f"{r['file']}: {r['format']}, {r['size_int8'] / 1e3:.0f} kB ({r['size_ratio']:.2f}x fp32), "
            f"loss {r['loss_fp32']:.4f} -> {r['loss_int8']:.4f} nats/char ({r['loss_delta']:+.5f}), "
            f"kept float: {kept}, TensorRT: {'ok' if r['tensorrt']['ok'] else 'no'}"
        )
        for s in r.get("sensitivity", [])[:5]:
            echo(f"  sensitivity {g}: {s['group']}: kept float -> delta {s['delta_kept_float']:+.5f}")
    echo(f"wrote {', '.join(str(p) for p in result.paths.values())}; manifest int8 section updated")
