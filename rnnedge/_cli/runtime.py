"""`rnnedge generate` and `rnnedge bench` (onnxruntime imported inside the commands; torch only for the baseline)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rnnedge._cli.common import domain_errors, echo, text_stdout
from rnnedge.threads import THREADS_HELP, resolve_threads

if TYPE_CHECKING:
    from rnnedge.runtime.bench import TorchBaseline

_VARIANT_HELP = "Precision variant: fp32 (step.onnx) or a recipe name, e.g. int8-dynamic (step.int8-dynamic.onnx)."
_PROVIDER_HELP = (
    "Where the graphs run: cpu (this CPU) | cpu-x86-avx2 | cpu-arm64 (emulated with qemu; `rnnedge targets`) "
    "| cuda | tensorrt | qnn-htp (Qualcomm's HTP simulator; reads DIR/qnn-htp/) | openvino | tract (other "
    "runtimes, the `runtimes` extra)."
)
_TF32_HELP = (
    "CUDA only: allow TF32 MatMuls (faster on Ampere+ GPUs; inputs rounded to 10 mantissa bits, ~5e-4 relative "
    "error per product instead of fp32's ~6e-8, so logits drift from the CPU's). Off by default."
)


def _resolve_model(model: Path, variant: str) -> Path:
    """`default` -> the bundled model, exported once (fp32, needs torch) into the rnnedge cache."""
    if str(model) != "default":
        return model
    from rnnedge import __version__
    from rnnedge.assets import default_model_path
    from rnnedge.errors import DependencyError, RnnedgeError
    from rnnedge.graphmeta import FP32

    if variant != FP32:
        raise RnnedgeError(
            f"'default' is exported fp32 only; for {variant} run `rnnedge pipeline default --out DIR`, then "
            f"`rnnedge generate DIR/export --variant NAME` with a variant it made"
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


def _eager_baseline(export_dir: Path, steps: int, provider: str) -> TorchBaseline | str:
    """The PyTorch eager baseline for `bench`, or the reason there is none (printed, never dropped)."""
    try:
        from rnnedge.exporter.eager_baseline import make_eager_baseline
    except ImportError as exc:
        return f"{exc.name or 'torch'} is not installed (the baseline runs the checkpoint in PyTorch)"
    return make_eager_baseline(export_dir, steps=steps, device="cpu" if provider == "cpu" else "cuda")


def register(app: typer.Typer) -> None:
    @app.command("generate")
    @domain_errors
    def generate_cmd(
        model: Path = typer.Argument(
            ..., help="Export folder (step.onnx inside), a step .onnx file, or 'default' (the bundled model)."
        ),
        prompt: str = typer.Option(
            "\n", "--prompt", "-p", show_default="a newline", help="Text to start from (must not be empty)."
        ),
        tokens: int = typer.Option(300, "--tokens", "-n", help="Characters to generate after the prompt."),
        variant: str = typer.Option("fp32", "--variant", help=_VARIANT_HELP),
        temperature: float = typer.Option(0.8, "--temperature", "-t", help="0 = greedy; higher = more random."),
        top_k: int = typer.Option(0, "--top-k", help="Sample from the k most likely characters only (0 = all)."),
        top_p: float = typer.Option(1.0, "--top-p", help="Sample from the smallest set with this probability."),
        seed: int | None = typer.Option(None, "--seed", help="Random seed (same seed, same text)."),
        on_unknown: str = typer.Option(
            "error", "--on-unknown", help="Prompt characters outside the vocab: error|skip."
        ),
        provider: str = typer.Option("cpu", "--provider", help=_PROVIDER_HELP),
        tf32: bool = typer.Option(False, "--tf32", help=_TF32_HELP),
        threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
        no_prompt: bool = typer.Option(False, "--no-echo-prompt", help="Print only the generated characters."),
    ) -> None:
        """Stream characters from the step graph to stdout as they are sampled (prompt first)."""
        from rnnedge.inference import ProviderChoice
        from rnnedge.runtime import StepSession, generate
        from rnnedge.targets import graph_folder

        choice = ProviderChoice(provider, tf32=tf32)
        path = graph_folder(_resolve_model(model, variant), choice)  # DIR/qnn-htp for --provider qnn-htp
        session = StepSession(path, providers=choice, threads=resolve_threads(threads), variant=variant)
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
        out = text_stdout()  # a terminal that cannot show a character gets an escape, not a traceback
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
        export_dir: Path = typer.Argument(..., help="Export folder (step.onnx, parallel.onnx, precision variants)."),
        variant: list[str] | None = typer.Option(
            None, "--variant", help="Compare fp32 with this variant (repeatable; default: every variant present)."
        ),
        json_out: Path | None = typer.Option(None, "--json", help="Also write every figure to this JSON file."),
        threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP + " Also numpy's floor."),
        steps: int = typer.Option(3000, "--steps", help="Timed step calls per configuration."),
        stream: int = typer.Option(
            0, "--stream", help="Also sample this many tokens and check the state stays finite (0 = off)."
        ),
        provider: str = typer.Option("cpu", "--provider", help=_PROVIDER_HELP),
        tf32: bool = typer.Option(False, "--tf32", help=_TF32_HELP),
        no_torch: bool = typer.Option(False, "--no-torch", help="Skip the PyTorch eager baseline."),
    ) -> None:
        """Step latency (p50/p99 µs) at batch 1 and 8 per variant; parallel tokens/s; floor; state bytes; vs PyTorch."""
        from rnnedge.errors import RnnedgeError
        from rnnedge.inference import ProviderChoice, resolve_providers
        from rnnedge.io import check_writable, write_json
        from rnnedge.progress import Stages
        from rnnedge.runtime.bench import bench_variants, run_bench
        from rnnedge.runtime.bench_report import format_table
        from rnnedge.runtime.cuda import memcpy_report
        from rnnedge.targets import EMULATED, where, where_line

        if not export_dir.is_dir():
            raise RnnedgeError(f"export folder not found: {export_dir}")
        if steps < 10:
            raise RnnedgeError(f"--steps must be at least 10, got {steps}")
        if stream < 0:
            raise RnnedgeError(f"--stream must be a number of tokens >= 1 (0 = off), got {stream}")
        threads = resolve_threads(threads)
        choice = ProviderChoice(provider, tf32=tf32)
        if choice.name == "qnn-htp":
            raise RnnedgeError(
                "bench times the device it runs on; qnn-htp is Qualcomm's x86 simulator of the HTP, whose speed "
                "says nothing about a phone's NPU. Check its accuracy with `rnnedge eval` or "
                "`rnnedge drift --provider qnn-htp`"
            )
        if choice.name in EMULATED:
            raise RnnedgeError(
                f"bench times the CPU it runs on; under an emulator ({choice.name}) it would time qemu. "
                f"Check {choice.name}'s accuracy with `rnnedge eval` or `rnnedge drift --provider {choice.name}`"
            )
        resolve_providers(choice)  # one line now if the provider is unknown or missing
        if json_out is not None:
            check_writable(json_out, "--json")  # before minutes of measuring, not after
        baseline = "--no-torch" if no_torch else _eager_baseline(export_dir, steps, provider)
        with Stages("bench") as stages:
            result = run_bench(
                export_dir,
                threads=threads,
                steps=steps,
                variants=variant or None,
                providers=choice,
                torch_baseline=baseline,
                stream_tokens=stream,
                stages=stages,
            )
        result["tf32"] = tf32
        result["target"] = where(choice)
        echo(format_table(result))
        echo(where_line(choice))
        if choice.on_gpu:  # copies ORT inserts between the CPU and the GPU, per graph
            result["memcpy_nodes"] = memcpy_report(bench_variants(export_dir, variant or None), choice)
            for v, kinds in result["memcpy_nodes"].items():
                counts = ", ".join(f"{k} {c.get('total', c.get('error'))}" for k, c in kinds.items())
                echo(f"Memcpy nodes on {provider} ({v}): {counts}")
        if json_out is not None:
            write_json(json_out, result)
            echo(f"wrote {json_out}")
