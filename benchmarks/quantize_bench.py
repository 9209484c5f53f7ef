"""Precision recipes benchmark: size, held-out loss delta and step latency of every variant vs fp32.

Models: the bundled default model (when present) and, for each mixer in `--archs`, a model trained for
`--seconds` on the first 90% of the text (a short run: deltas on a well-trained model may differ).
Each is exported with rnnedge.exporter.export_model, then quantized with every recipe in `--recipes`
(default: every preset), plus per-channel runs of the two int8 recipes, and for the LSTM the
`quantize_state` counter-example. Text: `--data PATH` (default: tiny-shakespeare, downloaded once
into the cache as `rnnedge train --data shakespeare` does). Calibration uses the `--calib-chars`
before the last 10%; the loss is nats/char on `--val-chars` of the last 10%. Latency: median µs/step
at batch 1, 1 thread, variant and fp32 timed in alternating rounds in one process (a ratio).

    python benchmarks/quantize_bench.py [--data PATH] [--seconds 60] [--archs mingru,minlstm,gru,lstm,elman]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from rnnedge.graphmeta import graph_file
from rnnedge.inference import open_graph
from rnnedge.models import MIXER_NAMES, ModelConfig, build_model
from rnnedge.quantization import PRESETS, quantize_export
from rnnedge.training.data import read_text, resolve_data
from rnnedge.vocab import CharVocab

OUT = Path(__file__).resolve().parent / "results" / "quantize_bench.json"
GOALS = {"int8-dynamic_loss_delta": 0.005, "int8-qdq_loss_delta": 0.01, "int8_step_size_ratio": 0.3}


def train(arch: str, text: str, vocab: CharVocab, seconds: float, d_model: int, n_layers: int) -> tuple:
    """A short AdamW run on random 128-char windows (enough for meaningful activations)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=len(vocab), arch=arch, n_layers=n_layers, d_model=d_model))
    ids = torch.tensor(vocab.encode(text))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    t0, steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        starts = torch.randint(0, len(ids) - 129, (16,)).tolist()
        batch = torch.stack([ids[s : s + 129] for s in starts])  # (B, T+1)
        logits, _ = model(batch[:, :-1])  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    print(f"  trained {arch} {steps} steps in {seconds:.0f}s, last train loss {loss.item():.3f}", flush=True)
    return model.eval(), steps, round(loss.item(), 4)


def export(model_or_ckpt: Any, vocab: CharVocab | None, out: Path) -> Path:
    from rnnedge.exporter import export_model
    from rnnedge.training.checkpoint import save_checkpoint

    if isinstance(model_or_ckpt, Path):
        ckpt = model_or_ckpt
    else:
        ckpt = out.parent / f"{out.name}-ckpt"
        save_checkpoint(ckpt, model_or_ckpt, vocab)
    export_model(ckpt, out, max_seq_len=4096)
    return out


def step_latencies_us(paths: list[Path], steps: int = 300, rounds: int = 5) -> list[float]:
    """Median µs per step at batch 1, 1 thread, carrying the state; the graphs are timed in alternating
    rounds so that all of them see the same load on a shared machine."""
    graphs = [open_graph(p, "step", threads=1) for p in paths]
    times: list[list[float]] = [[] for _ in graphs]
    for _ in range(rounds):
        for graph, spent in zip(graphs, times, strict=True):
            states = graph.zero_states(1)
            for t in range(steps):
                ids = np.array([t % len(graph.info.vocab)], np.int64)
                t0 = time.perf_counter()
                _, states = graph.run(ids, states)
                spent.append(time.perf_counter() - t0)
    return [float(np.median(spent) * 1e6) for spent in times]


def runs_of(recipes: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(result key, recipe, options): every recipe, plus per-channel runs of the int8 ones."""
    runs = [(name, name, {}) for name in recipes]
    runs += [(f"{n}+per_channel", n, {"per_channel": True}) for n in ("int8-dynamic", "int8-qdq") if n in recipes]
    return runs


def bench_model(name: str, folder: Path, calib: Path, val: Path, recipes: list[str]) -> dict[str, Any]:
    out = {}
    for key, recipe, options in runs_of(recipes):
        t0 = time.perf_counter()
        res = quantize_export(folder, recipe, calib_text=calib, eval_text=val, **options)
        step, par = res.graphs["step"], res.graphs["parallel"]
        fp32_us, var_us = step_latencies_us([folder / graph_file("step"), res.paths["step"]])
        out[key] = {
            "recipe": res.recipe.to_dict(),
            "step_size_fp32": step["size_fp32"],
            "step_size_variant": step["size_variant"],
            "step_size_ratio": step["size_ratio"],
            "parallel_size_ratio": par["size_ratio"],
            "loss_fp32": step["loss_fp32"],
            "step_loss_delta": step["loss_delta"],
            "parallel_loss_delta": par["loss_delta"],
            "step_us_fp32": round(fp32_us, 1),
            "step_us_variant": round(var_us, 1),
            "step_latency_ratio": round(var_us / fp32_us, 3),
            "parallel_tensorrt_rules_ok": par["tensorrt"]["rules_ok"],
            "parallel_not_converted_ops": par["not_converted_ops"],
            "quantize_seconds": round(time.perf_counter() - t0, 1),
        }
        if "preprocess" in par:
            out[key]["parallel_preprocess"] = par["preprocess"]
        r = out[key]
        print(
            f"  {name:8s} {key:24s} step {r['step_size_ratio']:.3f}x size, Δloss step {r['step_loss_delta']:+.5f} "
            f"parallel {r['parallel_loss_delta']:+.5f}, latency {r['step_latency_ratio']:.2f}x "
            f"({r['step_us_variant']:.0f} vs {r['step_us_fp32']:.0f} µs)",
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="shakespeare", help="text file, or 'shakespeare' (downloaded once, cached)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--archs", default=",".join(MIXER_NAMES))
    ap.add_argument("--recipes", default=",".join(PRESETS))
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=3)
    ap.add_argument("--val-chars", type=int, default=20000)
    ap.add_argument("--calib-chars", type=int, default=50000)
    ap.add_argument("--no-default", action="store_true", help="skip the bundled default model")
    ap.add_argument("--merge", action="store_true", help="keep other models' entries from the existing JSON")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = resolve_data(args.data)
    text = read_text(data)
    cut = int(len(text) * 0.9)
    vocab = CharVocab.from_text(text)
    recipes = [r for r in args.recipes.split(",") if r]
    results: dict[str, Any] = {
        "goals": GOALS,
        "data": data.name,
        "val_chars": args.val_chars,
        "calib_chars": args.calib_chars,
        "models": {},
        "env": {"onnxruntime": ort.__version__, "torch": torch.__version__, "python": sys.version.split()[0]},
    }
    with tempfile.TemporaryDirectory(prefix="qbench-") as tmp:
        root = Path(tmp)
        calib, val = root / "calib.txt", root / "val.txt"
        calib.write_text(text[cut - args.calib_chars : cut])  # end of the training split
        val.write_text(text[cut : cut + args.val_chars])
        from rnnedge.assets import default_model_path

        default = default_model_path()
        if not args.no_default and (default / "config.json").is_file():
            print("default model", flush=True)
            folder = export(default, None, root / "default")
            config = open_graph(folder / "step.onnx").info.config
            results["models"]["default"] = {
                "config": config,
                "runs": bench_model("default", folder, calib, val, recipes),
            }
        for arch in [a for a in args.archs.split(",") if a]:
            print(arch, flush=True)
            model, steps, train_loss = train(arch, text[:cut], vocab, args.seconds, args.d_model, args.n_layers)
            folder = export(model, vocab, root / arch)
            entry = {
                "config": model.config.to_dict(),
                "trained_seconds": args.seconds,
                "train_steps": steps,
                "last_train_loss": train_loss,
                "runs": bench_model(arch, folder, calib, val, recipes),
            }
            if arch == "lstm" and "int8-qdq" in recipes:  # the counter-example: state-producing ops quantized too
                res = quantize_export(
                    folder, "int8-qdq", calib_text=calib, eval_text=val, quantize_state=True, graphs=("step",)
                )
                entry["quantize_state_counter_example"] = {
                    "step_loss_delta": res.graphs["step"]["loss_delta"],
                    "vs_state_float_qdq": entry["runs"]["int8-qdq"]["step_loss_delta"],
                }
                print(f"  lstm quantize_state: Δloss step {res.graphs['step']['loss_delta']:+.5f}", flush=True)
            results["models"][arch] = entry
    if args.merge and OUT.is_file():  # keep entries of models not re-run this time
        old = json.loads(OUT.read_text())
        results["models"] = {**old.get("models", {}), **results["models"]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
