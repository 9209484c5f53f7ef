"""`rnnedge generate` and `rnnedge bench` (onnxruntime imported inside the commands; torch only for the baseline)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from rnnedge._cli.common import domain_errors, echo


def _resolve_model(model: Path, int8: bool) -> Path:
    """`default` -> the bundled model, exported once (fp32, needs torch) into the rnnedge cache."""
    if str(model) != "default":
        return model
    from rnnedge import __version__
    from rnnedge.assets import default_model_path
    from rnnedge.errors import DependencyError, RnnedgeError

    if int8:
        raise RnnedgeError(
            "'default' is exported fp32 only; for int8 run `rnnedge pipeline --out DIR`, then "
            "`rnnedge generate DIR/export --int8`"
        )
    root = Path(os.environ.get("RNNEDGE_CACHE") or Path.home() / ".cache" / "rnnedge")
    cache = root / f"default-export-{__version__}"
    if not (cache / "step.onnx").is_file():
        try:
            from rnnedge.exporter import export_model
        except ImportError as exc:
            raise DependencyError(f"'default' needs torch to export the bundled model once ({exc})") from None
        echo(f"exporting the bundled default model once to {cache} …", err=True)
        export_model(default_model_path(), cache, max_seq_len=4096)
    return cache


def register(app: typer.Typer) -> None:
    @app.command("generate")
    @domain_errors
    def generate_cmd(
        model: Path = typer.Argument(
            ..., help="Export folder (step.onnx inside), a step .onnx file, or 'default' (the bundled model)."
        ),
        prompt: str = typer.Option("\n", "--prompt", "-p", help="Text to start from (must not be empty)."),
        tokens: int = typer.Option(300, "--tokens", "-n", help="Characters to generate after the prompt."),
        int8: bool = typer.Option(False, "--int8", help="Use step.int8.onnx from the export folder."),
        temperature: float = typer.Option(0.8, "--temperature", "-t", help="0 = greedy; higher = more random."),
        top_k: int = typer.Option(0, "--top-k", help="Sample from the k most likely characters only (0 = all)."),
        top_p: float = typer.Option(1.0, "--top-p", help="Sample from the smallest set with this probability."),
        seed: int | None = typer.Option(None, "--seed", help="Random seed (same seed, same text)."),
        on_unknown: str = typer.Option(
            "error", "--on-unknown", help="Prompt characters outside the vocab: error|skip."
        ),
        provider: str = typer.Option("cpu", "--provider", help="Execution provider: cpu | cuda | tensorrt."),
        threads: int | None = typer.Option(None, "--threads", help="ONNX Runtime intra-op threads (default: ORT's)."),
        no_prompt: bool = typer.Option(False, "--no-echo-prompt", help="Print only the generated characters."),
    ) -> None:
        """Stream characters from the step graph to stdout as they are sampled (prompt first)."""
        from rnnedge.runtime import StepSession, generate

        session = StepSession(_resolve_model(model, int8), providers=provider, threads=threads, int8=int8)
        chars = generate(
            session,
            prompt,
            tokens,
            temperature=temperature,
            top_k=top_k or None,
            top_p=None if top_p == 1.0 else top_p,
            seed=seed,
            on_unknown=on_unknown,
        )
        out = sys.stdout
        if not no_prompt:
            out.write(prompt)
            out.flush()
        for ch in chars:
            out.write(ch)
            out.flush()
        out.write("\n")
        out.flush()

    @app.command("bench")
    @domain_errors
    def bench_cmd(
        export_dir: Path = typer.Argument(..., help="Export folder (step.onnx, parallel.onnx, optional int8)."),
        json_out: Path | None = typer.Option(None, "--json", help="Also write every figure to this JSON file."),
        threads: int = typer.Option(2, "--threads", help="Intra-op threads for ONNX Runtime, numpy and torch."),
        steps: int = typer.Option(3000, "--steps", help="Timed step calls per configuration."),
        stream: int = typer.Option(0, "--stream", help="Also sample this many tokens and check the state stays sane."),
        no_torch: bool = typer.Option(False, "--no-torch", help="Skip the PyTorch eager baseline."),
    ) -> None:
        """Step latency (p50/p99 µs) at batch 1 and 8, fp32 and int8; parallel tokens/s; floor; vs PyTorch."""
        from rnnedge.errors import RnnedgeError
        from rnnedge.io import write_json
        from rnnedge.runtime.bench import format_table, run_bench

        if not export_dir.is_dir():
            raise RnnedgeError(f"export folder not found: {export_dir}")
        if steps < 10:
            raise RnnedgeError(f"--steps must be at least 10, got {steps}")
        baseline, skipped = None, "--no-torch"
        if not no_torch:
            from rnnedge._cli.torch_baseline import make_torch_baseline

            made = make_torch_baseline(export_dir, steps=steps)
            baseline, skipped = (None, made) if isinstance(made, str) else (made, "")
        result = run_bench(export_dir, threads=threads, steps=steps, torch_baseline=baseline, stream_tokens=stream)
        if baseline is None:
            result["torch"] = {"skipped": skipped}
        echo(format_table(result))
        if json_out is not None:
            write_json(json_out, result)
            echo(f"wrote {json_out}")
