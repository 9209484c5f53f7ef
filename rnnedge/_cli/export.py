"""`rnnedge export` and `rnnedge build-engine` (torch / onnx / tensorrt imported inside the commands)."""

from __future__ import annotations

from pathlib import Path

import typer

from rnnedge._cli.common import OVERWRITE_HELP, domain_errors, echo


def _resolve_checkpoint(ckpt: str) -> Path:
    if ckpt != "default":
        return Path(ckpt)
    from rnnedge.errors import CheckpointError

    try:
        from rnnedge.assets import default_model_path
    except ImportError as exc:
        raise CheckpointError("this rnnedge install has no bundled default model") from exc
    path = Path(default_model_path())
    if not (path / "config.json").is_file():
        raise CheckpointError(f"the bundled default model is missing from this install ({path})")
    return path


def _summary(manifest: dict) -> None:
    checks = manifest["verification"]["checks"]
    echo(f"{'graph':<10}{'nodes':>7}{'size':>11}  {'worst check (max abs diff)':<36}simplified")
    for kind, g in manifest["graphs"].items():
        mine = [c for c in checks if kind in c["graph"].split("+")]
        worst = max(mine, key=lambda c: c["max_abs_diff"], default=None)
        fig = f"{worst['max_abs_diff']:.2e} {worst['name']}" if worst else "not verified"
        size = f"{g['size_bytes'] / 1024:.1f} KiB"
        simp = "yes" if g["simplified"]["applied"] else f"no ({g['simplified']['reason']})"
        echo(f"{kind:<10}{g['nodes']:>7}{size:>11}  {fig:<36}{simp}")
    trt = manifest["tensorrt"]
    echo(f"TensorRT static check (parallel): {'ok' if trt['ok'] else str(len(trt['problems'])) + ' problem(s)'}")
    for p in trt["problems"][:5]:
        echo(f"  - {p}")
    if manifest.get("ort_format"):
        echo(f"ORT format: {', '.join(manifest['ort_format']['files'])}")
    if manifest.get("mobile"):
        mob = manifest["mobile"]
        echo(f"mobile/: {mob['graph']['nodes']} nodes, {', '.join(mob['files'])}")
        for ep, fig in mob["checker"]["fp32"].items():
            share = f"{100 * fig['largest_partition_share']:.1f}%"
            echo(f"  {ep}: {fig['partitions']} partition(s), {share} of {fig['nodes']} nodes in the largest")

    if manifest.get("qnn_htp"):
        htp = manifest["qnn_htp"]
        echo(f"qnn-htp/: step.onnx, {htp['graph']['nodes']} nodes, batch {htp['batch']}, opset {htp['graph']['opset']}")
    if manifest.get("litert"):
        lit, worst = manifest["litert"], manifest["litert"]["verification"][-1:]
        check = f", LiteRT vs ORT max |Δ| {worst[0]['max_abs_diff']:.2g}" if worst else ""
        size = f"{lit['tflite']['size_bytes'] / 1024:.1f} KiB"
        echo(f"litert/: {', '.join(lit['files'])} (step.tflite {size}, built-ins only{check})")


def register(app: typer.Typer) -> None:
    @app.command("export")
    @domain_errors
    def export(
        ckpt: str = typer.Argument(
            None, help="Checkpoint folder, or 'default' for the bundled default model (not with --from)."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if missing)."),
        opset: int = typer.Option(17, "--opset", help="ONNX opset (17-20)."),
        max_seq_len: int = typer.Option(65536, "--max-seq-len", help="Longest T the parallel graph is exact for."),
        no_simplify: bool = typer.Option(False, "--no-simplify", help="Skip onnxsim."),
        ort_format: bool = typer.Option(False, "--ort-format", help="Also write .ort files + required-ops config."),
        target: str = typer.Option(
            "default",
            "--target",
            help="'mobile' adds mobile/: a batch-1 step graph for NNAPI/CoreML, .ort, op config; 'qnn-htp' adds "
            "qnn-htp/: a fixed-batch step graph Qualcomm's HTP (Hexagon NPU) runs whole; 'litert' adds litert/: "
            "step.tflite (TFLite built-ins) + step.json sidecar, verified in LiteRT.",
        ),
        source: str = typer.Option(
            None, "--from", help="Bring your own model: word-lm (nn.LSTM/GRU/RNN LM) or mingru-pytorch (minLM)."
        ),
        weights: Path = typer.Option(
            None, "--weights", help="With --from: a state_dict, .safetensors or .pt (loaded with weights_only=True)."
        ),
        tokenizer: str = typer.Option(
            None,
            "--tokenizer",
            help="With --from: bytes | char:<characters> | chars:<text file> | a Hugging Face tokenizer.json.",
        ),
        rnn_type: str = typer.Option(
            None,
            "--rnn-type",
            help="With --from word-lm: LSTM | GRU | RNN_TANH | RNN_RELU (default: from the weights).",
        ),
        batch_first: bool = typer.Option(False, "--batch-first", help="With --from word-lm: the RNN is batch_first."),
        batch: int = typer.Option(1, "--batch", help="qnn-htp: the step graph's fixed batch (streams per call)."),
        ids: str = typer.Option(
            None,
            "--ids",
            help="int64 | int32: the token ids' dtype of the target's graphs (default: step/parallel and qnn-htp "
            "int64, mobile int32; --target mobile --ids int64 for a converter such as onnx2tf).",
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    ) -> None:
        """Export a checkpoint (or, with --from, your own model's weights) to parallel.onnx + step.onnx +
        manifest.json, verified before writing."""
        if source is not None or weights is not None:
            from rnnedge._cli.byom import export_from

            if ids is not None:
                from rnnedge.errors import ConfigError

                raise ConfigError("--ids applies to an rnnedge checkpoint's export, not to --from (its ids are int64)")

            result = export_from(
                source,
                weights,
                tokenizer,
                out,
                ckpt,
                rnn_type,
                batch_first,
                opset,
                max_seq_len,
                no_simplify,
                ort_format,
                overwrite,
            )
            _summary(result.manifest)
            echo(f"wrote {result.out_dir} (all {len(result.checks)} checks passed)")
            return
        if ckpt is None:
            from rnnedge.errors import ConfigError

            raise ConfigError(
                "give a checkpoint folder (or 'default'), or --from word-lm|mingru-pytorch --weights FILE"
            )
        from rnnedge.exporter import export_model

        result = export_model(
            _resolve_checkpoint(ckpt),
            out,
            opset=opset,
            max_seq_len=max_seq_len,
            simplify=not no_simplify,
            ort_format=ort_format,
            target=target,
            batch=batch,
            overwrite=overwrite,
            ids=ids,
        )
        _summary(result.manifest)
        tolerance = result.manifest["verification"]["tolerance"]
        echo(f"wrote {result.out_dir} (all {len(result.checks)} checks passed, tolerance {tolerance:g})")

    @app.command("build-engine")
    @domain_errors
    def build_engine(
        export_dir: Path = typer.Argument(..., help="An export folder (holds parallel.onnx)."),
        variant: str = typer.Option(
            "fp32", "--variant", help="Precision variant: fp32 (parallel.onnx) or a recipe name, e.g. int8-qdq."
        ),
        out: Path = typer.Option(None, "--out", "-o", help="Engine file (default: DIR/parallel.<variant>.plan)."),
        fp16: bool = typer.Option(False, "--fp16", help="Allow FP16 kernels (on for an fp16 variant)."),
        max_seq_len: int = typer.Option(4096, "--max-seq-len", help="Largest T in the optimization profile."),
        max_batch: int = typer.Option(8, "--max-batch", help="Largest batch in the optimization profile."),
    ) -> None:
        """Build a TensorRT engine from a parallel graph; a QDQ variant enables INT8 (needs tensorrt, on CUDA)."""
        from rnnedge.exporter.engine import build_engine as build

        path = build(export_dir, variant=variant, out=out, fp16=fp16, max_seq_len=max_seq_len, max_batch=max_batch)
        echo(f"wrote {path}")
