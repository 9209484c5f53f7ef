"""`rnnedge train` and `rnnedge eval` (torch is imported inside the commands)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from rnnedge._cli.common import domain_errors, echo
from rnnedge.errors import ConfigError, DependencyError, RnnedgeError
from rnnedge.models.registry import MIXER_NAMES
from rnnedge.progress import Stages, stage
from rnnedge.threads import THREADS_HELP, resolve_threads
from rnnedge.training.presets import PRESET_HELP, size_preset

_ARCH_HELP = "Mixer: " + ", ".join(MIXER_NAMES) + " (rnnedge.models.registry)."


def _text_arg(data: str, stages: Stages | None = None) -> str:
    from rnnedge.training.data import read_text, resolve_data

    stage(stages, f"reading {data}")
    text = read_text(resolve_data(data))
    stage(stages, f"scoring {len(text):,} characters")
    return text


@domain_errors
def train_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder to write (model.safetensors + config.json)."),
    data: str | None = typer.Option(
        None,
        "--data",
        "-d",
        help="UTF-8 text file, or 'shakespeare' (downloaded once to the cache). "
        "Needed on --resume unless the run used 'shakespeare'.",
    ),
    arch: str | None = typer.Option(None, "--arch", help=_ARCH_HELP + " (default mingru)"),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help=f"Model size: {PRESET_HELP} params for minGRU (other mixers differ); sets the shape, "
        "--seq-len, --batch-size, --lr and --warmup. Options given explicitly override it.",
    ),
    layers: int | None = typer.Option(None, "--layers", help="Number of blocks. (default 3)"),
    d_model: int | None = typer.Option(None, "--d-model", help="Model width. (default 128)"),
    expansion: float | None = typer.Option(None, "--expansion", help="Recurrent width / d_model. (default 2)"),
    mlp_ratio: float | None = typer.Option(None, "--mlp-ratio", help="MLP width / d_model. (default 4)"),
    heads: int | None = typer.Option(
        None, "--heads", help="Attention heads (transformer, aaren; must divide --d-model). (default 4)"
    ),
    window: int | None = typer.Option(
        None,
        "--window",
        help="Transformer: tokens each token attends to = its KV cache per layer; at most --seq-len. "
        "(default 128, or --seq-len if shorter)",
    ),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Training window length. (default 256)"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Windows per step (per process). (default 32)"),
    steps: int | None = typer.Option(None, "--steps", help="Total optimiser steps. (default 2000)"),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate. (default 3e-3)"),
    min_lr: float | None = typer.Option(None, "--min-lr", help="Final LR of the cosine decay. (default lr/10)"),
    warmup: int | None = typer.Option(None, "--warmup", help="Linear warm-up steps. (default 100)"),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="AdamW weight decay. (default 0.1)"),
    grad_clip: float | None = typer.Option(None, "--grad-clip", help="Max grad norm, 0 = off. (default 1.0)"),
    seed: int | None = typer.Option(None, "--seed", help="Seed for init and batches. (default 1337)"),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N. (default cpu)"),
    eval_every: int | None = typer.Option(None, "--eval-every", help="Val loss every N steps. (default 250)"),
    eval_batches: int | None = typer.Option(
        None, "--eval-batches", help="Val chars = this x batch x seq-len (at most). (default 16)"
    ),
    save_every: int | None = typer.Option(None, "--save-every", help="Checkpoint every N steps; 0 = at each eval."),
    max_time: float | None = typer.Option(None, "--max-time", help="Stop after this many seconds (LR follows time)."),
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads per process (>= 1)."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue from this checkpoint (same run config)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a checkpoint already in --out."),
    log_every: int = typer.Option(0, "--log-every", help="Without a terminal: also log every N steps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Train a char LM (mixers with a parallel form train through it). Works under torchrun (DDP)."""
    from rnnedge.training.config import TrainConfig, check_fields_apply
    from rnnedge.training.data import resume_source
    from rnnedge.training.device import resolve_device
    from rnnedge.training.train import resumed_config, train

    if device is not None:
        resolve_device(device)  # before any work: no CUDA, or an unknown device, is one line
    sized = size_preset(preset).fields() if preset is not None else {}

    given: dict[str, Any] = {
        "arch": arch,
        "n_layers": layers,
        "d_model": d_model,
        "expansion": expansion,
        "mlp_ratio": mlp_ratio,
        "n_heads": heads,
        "window": window,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "steps": steps,
        "lr": lr,
        "min_lr": min_lr,
        "warmup": warmup,
        "weight_decay": weight_decay,
        "grad_clip": grad_clip,
        "seed": seed,
        "device": device,
        "eval_every": eval_every,
        "eval_batches": eval_batches,
        "save_every": save_every,
        "max_time": max_time,
        "threads": threads,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if resume is not None:
        base, meta = resumed_config(resume)
        data = data or resume_source(meta, resume)
    else:
        base = TrainConfig()
    if not data:
        raise ConfigError("--data is required (a text file, or 'shakespeare')")
    try:
        config = base.replace(**{**sized, **given})
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
    check_fields_apply(config.arch, given)
    result = train(config, data, out, resume=resume, quiet=quiet, log_every=log_every, overwrite=overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        val = "-" if result.val_loss is None else f"{result.val_loss:.4f}"
        echo(
            f"saved {result.out_dir} ({config.arch}, {result.num_params:,} params): {result.steps_done} steps, "
            f"val loss {val} nats/char, {result.train_time_s:.1f} s"
        )


@domain_errors
def eval_cmd(
    path: Path = typer.Argument(..., help="A checkpoint folder, an export folder, or a parallel .onnx file."),
    data: str = typer.Option(..., "--data", "-d", help="UTF-8 text file, or 'shakespeare'."),
    variant: str = typer.Option(
        "fp32", "--variant", help="Exports only: precision variant (fp32, or a recipe name such as int8-qdq)."
    ),
    on_unknown: str = typer.Option("error", "--on-unknown", help="Characters outside the vocabulary: error or skip."),
    chunk_len: int = typer.Option(1024, "--chunk-len", help="Checkpoints only: characters per forward call."),
    device: str = typer.Option("cpu", "--device", help="Checkpoints only: cpu or cuda."),
    provider: str = typer.Option(
        "cpu",
        "--provider",
        help="Exports only: cpu (this CPU) | cpu-x86-avx2 | cpu-arm64 (emulated; `rnnedge targets`) | cuda | tensorrt "
        "| qnn-htp (Qualcomm's HTP simulator; reads DIR/qnn-htp/).",
    ),
    tf32: bool = typer.Option(
        False,
        "--tf32",
        help="Exports on CUDA only: allow TF32 MatMuls (faster on Ampere+ GPUs; MatMul inputs rounded to 10 "
        "mantissa bits, so the loss differs slightly from fp32's). Off by default.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    json_out: Path | None = typer.Option(
        None, "--json-out", help="Also write the JSON object to this file (as `bench --json` does)."
    ),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
) -> None:
    """Mean loss (nats/char) and bits/char of a checkpoint or an exported model on a text."""
    from rnnedge.graphmeta import FP32, check_variant_name, list_variants
    from rnnedge.io import check_writable, write_json

    if json_out is not None:
        check_writable(json_out, "--json-out")  # before the text is scored, not after
    n_threads = resolve_threads(threads)
    stages = Stages("eval", total=2, lines=not as_json)  # stdout stays JSON with --json; closed before the result

    if on_unknown not in ("error", "skip"):
        raise ConfigError(f"--on-unknown must be error or skip, not {on_unknown!r}")
    if not path.exists():
        raise RnnedgeError(f"not found: {path}")
    if variant != FP32:
        check_variant_name(variant)
    is_export = (path.is_dir() and bool(list_variants(path))) or (path.is_file() and path.suffix == ".onnx")
    if is_export:
        if device != "cpu":
            raise ConfigError("--device applies to checkpoints; for an export use --provider cuda (or tensorrt)")
        try:
            from rnnedge.inference import ProviderChoice, resolve_providers
            from rnnedge.runtime.evaluate import evaluate_export
        except ImportError as exc:
            raise DependencyError(f"evaluating an export needs onnxruntime ({exc})") from None
        from rnnedge.targets import graph_folder

        choice = ProviderChoice(provider, tf32=tf32)
        resolve_providers(choice)  # unknown or missing provider: one line before the text is read
        path = graph_folder(path, choice)  # DIR/qnn-htp for --provider qnn-htp
        result = evaluate_export(
            path,
            _text_arg(data, stages),
            variant=variant,
            on_unknown=on_unknown,
            providers=choice,
            threads=n_threads,
            progress=stages.fraction,
        )
        from rnnedge.targets import where

        result["target"] = where(choice)
        kind, label = "export", f"export, {result['graph']}"
    elif (path / "config.json").is_file() or (path / "model.safetensors").is_file():
        if variant != FP32:
            raise ConfigError("--variant applies to export folders only; export and quantize the checkpoint first")
        if provider != "cpu":
            raise ConfigError("--provider applies to exports; for a checkpoint use --device cuda")
        if tf32:
            raise ConfigError("--tf32 applies to exports run on --provider cuda")
        from rnnedge.training.device import resolve_device
        from rnnedge.training.evaluate import evaluate_checkpoint

        resolve_device(device)  # one line for tpu / cuda without CUDA, before the text is read

        import torch

        torch.set_num_threads(n_threads)
        text = _text_arg(data, stages)
        result = evaluate_checkpoint(
            path,
            text,
            chunk_len=chunk_len,
            on_unknown=on_unknown,
            device=device,
            progress=stages.fraction,  # type: ignore[arg-type]
        )
        kind, label = "checkpoint", "checkpoint"
    else:
        raise RnnedgeError(
            f"{path} is neither a checkpoint folder (config.json) nor an export (parallel.onnx, step.onnx)"
        )
    result = {"path": str(path), "kind": kind, "variant": variant, "threads": n_threads, **result}
    stages.close()
    if json_out is not None:
        write_json(json_out, result)
    if as_json:
        echo(json.dumps(result))
    elif result.get("tokenizer", "char") != "char":  # bytes or subwords: per token, per character, per byte
        echo(
            f"{path} ({label}): loss {result['loss_nats']:.4f} nats/token over {result['tokens']:,} tokens; "
            f"{result['nats_per_char']:.4f} nats/char, {result['bits_per_byte']:.4f} bits/byte"
        )
    else:
        echo(
            f"{path} ({label}): loss {result['loss_nats']:.4f} nats/char, "
            f"{result['bits_per_char']:.4f} bits/char over {result['chars']:,} chars"
        )
        if "target" in result:
            from rnnedge.targets import where_line

            echo(where_line(result["target"]["target"]))


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
