"""The models `benchmarks/scaling.py` measures: untrained preset models, their exports and precision
variants, the weight bytes a step reads per token, the bundled model's loss deltas and the drift run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import numpy_helper

from rnnedge.graphmeta import INPUT_IDS, graph_file
from rnnedge.models import ModelConfig, build_model
from rnnedge.training.data import VAL_FRACTION, read_text, resolve_data
from rnnedge.training.presets import SizePreset, size_preset
from rnnedge.vocab import CharVocab

CALIB_CHARS = 200_000  # calibration text: this many characters before the held-out part
PASS_THROUGH = ("DequantizeLinear", "Cast", "Identity", "Reshape", "Transpose")  # between a table and Gather


@dataclass(frozen=True)
class Texts:
    """The benchmark's text: its vocabulary, the calibration and held-out files, and what it was."""

    text: str
    vocab: CharVocab
    cut: int  # first held-out character
    calib: Path
    heldout: Path
    source: dict[str, Any]


def read_texts(data: str, folder: Path) -> Texts:
    """--data as text, vocabulary and two files in `folder`: calibration (the CALIB_CHARS before the last
    10%) and held-out (the last 10%)."""
    path = resolve_data(data)
    text = read_text(path)
    cut = int(len(text) * (1 - VAL_FRACTION))
    calib, heldout = folder / "calib.txt", folder / "heldout.txt"
    calib.write_text(text[max(0, cut - CALIB_CHARS) : cut], encoding="utf-8")
    heldout.write_text(text[cut:], encoding="utf-8")
    source = {"name": path.name, "chars": len(text), "held_out": f"last {VAL_FRACTION:.0%}"}
    return Texts(text, CharVocab.from_text(text), cut, calib, heldout, source)


def make_untrained(preset: SizePreset, arch: str, vocab: CharVocab, out: Path) -> tuple[Path, int, dict[str, Any]]:
    """(checkpoint folder, parameter count, model config) of a seeded, untrained `arch` at the preset's shape."""
    from rnnedge.training.checkpoint import save_checkpoint

    fields = preset.fields()
    config = ModelConfig(
        vocab_size=len(vocab),
        arch=arch,
        **{k: fields[k] for k in ("n_layers", "d_model", "expansion", "mlp_ratio")},
    )
    torch.manual_seed(0)
    model = build_model(config).eval()
    save_checkpoint(out, model, vocab, training={"note": f"untrained {preset.name} preset (benchmarks/scaling.py)"})
    return out, model.num_params(), config.to_dict()


def export(ckpt: Path, out: Path, max_seq_len: int) -> Path:
    """Both graphs of `ckpt` (checks left to the exporter's tests), the parallel one exact to max_seq_len."""
    from rnnedge.exporter import export_model

    export_model(ckpt, out, max_seq_len=max_seq_len, verify=False)
    return out


def step_only(texts: Texts) -> dict[str, Any]:
    """quantize_export's texts and options here: the step graph only, characters outside the vocabulary skipped."""
    return {"calib_text": texts.calib, "eval_text": texts.heldout, "on_unknown": "skip", "graphs": ("step",)}


def make_variants(folder: Path, recipes: list[str], texts: Texts) -> tuple[list[str], dict[str, str]]:
    """Each recipe's step-graph variant in `folder`: (variants made, {recipe: why it failed})."""
    made: list[str] = []
    failed: dict[str, str] = {}
    if not recipes:
        return made, failed
    from rnnedge.quantization import quantize_export

    for name in recipes:
        try:
            quantize_export(
                folder, name, calib_text=texts.calib, eval_text=texts.heldout, on_unknown="skip", graphs=("step",)
            )
            made.append(name)
        except Exception as exc:  # one recipe failing must not lose the others' figures; it is recorded
            failed[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            print(f"  {folder.parent.name}: {name} failed: {failed[name]}", flush=True)
    return made, failed


def _embedding_tables(model: onnx.ModelProto) -> set[str]:
    """Initializers that feed the token lookup (Gather on input_ids), through dequantize/cast/reshape nodes."""
    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {i.name for i in model.graph.initializer}
    ids = {INPUT_IDS}
    for node in model.graph.node:  # input_ids may be cast before the lookup
        if node.op_type == "Cast" and node.input and node.input[0] in ids:
            ids.update(node.output)
    tables: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in ("Gather", "GatherBlockQuantized") or len(node.input) < 2 or node.input[1] not in ids:
            continue
        todo = [node.input[0], *node.input[2:]]  # the table, and a blocked lookup's scales / zero points
        while todo:
            name = todo.pop()
            if name in initializers:
                tables.add(name)
            elif name in producers and producers[name].op_type in PASS_THROUGH:
                todo += [i for i in producers[name].input if i]
    return tables


def weight_bytes_per_token(step: Path) -> dict[str, int]:
    """Bytes of the step graph's constants (weights, scales, biases, norms) and of those one token reads:
    all of them except the token-embedding table, of which a token reads one row."""
    model = onnx.load(str(step))
    tables = _embedding_tables(model)
    sizes = {i.name: numpy_helper.to_array(i).nbytes for i in model.graph.initializer}
    embedding = sum(sizes[n] for n in tables)
    total = sum(sizes.values())
    return {"initializer_bytes": total, "embedding_bytes": embedding, "weight_bytes": total - embedding}


def loss_deltas(recipes: list[str], texts: Texts, work: Path) -> dict[str, Any]:
    """Each recipe's held-out loss delta and size on the bundled default model (trained)."""
    from rnnedge.assets import default_model_path

    ckpt = default_model_path()
    if not recipes:
        return {"skipped": "no --recipes"}
    if not (ckpt / "config.json").is_file():
        return {"skipped": f"no bundled default model at {ckpt}"}
    from rnnedge.quantization import quantize_export

    export(ckpt, work, 4096)
    fp32_bytes = (work / graph_file("step")).stat().st_size
    out: dict[str, Any] = {
        "model": "the bundled default model (rnnedge/assets/default_model: trained minGRU, the `small` shape); "
        "the preset models above are untrained, so their loss deltas would mean nothing",
        "held_out": f"{texts.source['name']}, {texts.source['held_out']}",
        "fp32_step_bytes": fp32_bytes,
        "recipes": {},
        "failed": {},
    }
    for name in recipes:
        try:
            res = quantize_export(
                work, name, calib_text=texts.calib, eval_text=texts.heldout, on_unknown="skip", graphs=("step",)
            )
        except Exception as exc:  # recorded, the other recipes still run
            out["failed"][name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            continue
        report = res.graphs["step"]
        size = res.paths["step"].stat().st_size
        out["recipes"][name] = {
            **{k: report[k] for k in ("loss_fp32", "loss_variant", "loss_delta") if k in report},
            "step_bytes": size,
            "size_ratio": size / fp32_bytes,
        }
    return out


def drift_figures(args: argparse.Namespace, texts: Texts, work: Path) -> dict[str, Any]:
    """int8 drift of the --drift-preset minGRU (or --drift-checkpoint) over --drift-steps, summarised."""
    from rnnedge.drift import run_drift, summarize

    if args.drift_checkpoint is not None:
        ckpt, trained = args.drift_checkpoint, f"trained checkpoint {args.drift_checkpoint}"
    else:
        ckpt, _, _ = make_untrained(size_preset(args.drift_preset), "mingru", texts.vocab, work / "ckpt")
        trained = (
            f"untrained {args.drift_preset} preset minGRU (seeded init): pass --drift-checkpoint for a trained one"
        )
    export(ckpt, work / "export", 1024)
    made, failed = make_variants(work / "export", [args.drift_recipe], texts)
    if not made:
        return {"model": trained, "failed": failed}
    need = (args.drift_steps + 1) * args.drift_streams
    held_out = texts.text[texts.cut :]
    text, which = (held_out, "held-out last 10%") if len(held_out) >= need else (texts.text, "whole text")
    r = run_drift(
        work / "export", text, variant=made[0], steps=args.drift_steps, streams=args.drift_streams, on_unknown="skip"
    )
    m = summarize(r)
    se = m["state_error"]
    return {
        "model": trained,
        "variant": made[0],
        "text": which,
        "steps": r.steps,
        "streams": r.streams,
        "seconds": round(r.seconds, 1),
        "state_error_at": se["at"],
        "worst_state": se["worst_state"],
        "fit": se["fit"],
        "accumulation_last": se["accumulation_last"],
        "top1_agreement": m["top1_agreement"],
        "kl_mean": m["kl_mean"],
        "loss": m["loss"],
        "notes": list(r.notes),
    }
