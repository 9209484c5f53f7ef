"""`rnnedge pipeline`: the whole job on one model, with a summary at the end."""

from __future__ import annotations

import typer

from rnnedge._cli.common import OVERWRITE_HELP, domain_errors, echo
from rnnedge.threads import THREADS_HELP, resolve_threads
from rnnedge.training.presets import PRESET_HELP


def register(app: typer.Typer) -> None:
    @app.command("pipeline")
    @domain_errors
    def pipeline(
        ckpt: str | None = typer.Argument(
            None,
            help="Checkpoint folder or 'default' (bundled minGRU); omitted: train on --data if given, else default.",
        ),
        out: str = typer.Option(..., "--out", help="Output folder (export/, report/, sample.txt, summary.json)."),
        data: str | None = typer.Option(
            None, "--data", help="Text file (or 'shakespeare'): held-out text; with no CKPT, train on it first."
        ),
        arch: str = typer.Option("mingru", "--arch", help="Arch to train when --data is given without CKPT."),
        train_steps: int = typer.Option(300, "--train-steps", help="Training steps when training first."),
        method: str = typer.Option(
            "int8-dynamic", "--method", help="Precision recipe: int8-dynamic, int8-qdq, fp16, int8-weight, int4-weight."
        ),
        drift_steps: int = typer.Option(2048, "--drift-steps", help="Timesteps in the drift analysis."),
        streams: int = typer.Option(8, "--streams", help="Parallel text streams in the drift analysis."),
        prompt: str = typer.Option("ROMEO:", "--prompt", help="Prompt for the sample from the variant."),
        tokens: int = typer.Option(300, "--tokens", help="Characters to generate."),
        seed: int = typer.Option(0, "--seed", help="Sampling / training seed."),
        threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP + " Every stage, training included."),
        preset: str | None = typer.Option(
            None, "--preset", help=f"Training only: model size {PRESET_HELP} (default: `rnnedge train`'s)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    ) -> None:
        """Train (optional) -> export -> precision variant -> drift report -> a sample from the variant."""
        from rnnedge.pipeline import PipelineConfig, run_pipeline

        cfg = PipelineConfig(
            out=out, ckpt=ckpt, data=data, arch=arch, train_steps=train_steps, method=method,
            drift_steps=drift_steps, drift_streams=streams, prompt=prompt, tokens=tokens, seed=seed,
            threads=resolve_threads(threads), preset=preset, overwrite=overwrite,
        )  # fmt: skip
        summary = run_pipeline(cfg, log=echo)
        echo(format_summary(summary))


def format_summary(s: dict) -> str:  # type: ignore[type-arg]
    """The closing table of `rnnedge pipeline`."""
    lat = s["step_us_per_token_p50"]
    variant = s["variant"]
    lines = ["", "Summary", "-------"]
    for name, f in s["files"].items():
        lines.append(f"  {name:<20} {f['bytes'] / 1024:>9.1f} KiB  {f['path']}")
    lines.append(f"  held-out text          {s['heldout_text']['source']} ({s['heldout_text']['chars']:,} chars)")
    for kind, g in s["loss_nats"].items():
        lines.append(
            f"  {kind + ' graph loss':<22} fp32 {g['loss_fp32']:.4f}  {variant} {g['loss_variant']:.4f}  "
            f"delta {g['loss_delta']:+.4f} nats/char on {g.get('scored_on', 'the held-out text')}  "
            f"(size {g['size_variant'] / g['size_fp32']:.2f}x fp32)"
        )
    d = s.get("drift_nll_nats", {})
    if "scored_on" in d:
        lines.append(
            f"  drift loss             fp32 {d['baseline']:.4f}  {variant} {d['variant']:.4f} nats/char "
            f"on {d['scored_on']}"
        )
    lines += [
        f"  step latency (batch 1) fp32 {lat['fp32']:.0f} µs/token  {variant} {lat[variant]:.0f} µs/token",
        f"  drift verdict          {s.get('drift_verdict') or '-'}",
        "  stages                 " + ", ".join(f"{k.split(' ')[0]} {v:.1f}s" for k, v in s["stage_seconds"].items()),
    ]
    return "\n".join(lines)
