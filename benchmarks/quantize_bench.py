"""int8 quantization benchmark: sizes, loss delta on tiny-shakespeare val, step latency int8 vs fp32.

Models: the bundled default model (when present) and, for each of the four archs, a model trained
for `--seconds` on tiny-shakespeare's first 90% (a short run: deltas on a well-trained model may differ).
Each is exported with rnnedge.exporter.export_model, then quantized with
  dynamic (step graph) and static minmax, each with per_channel off/on;
the parallel graph is always static symmetric QDQ. Also the LSTM with --quantize-state counter-example.
Loss: nats/char on ~20k chars of the last 10% (val). Latency: median µs/step at batch 1, 1 thread,
int8 and fp32 measured in the same process (reported as a ratio).

    python benchmarks/quantize_bench.py [--seconds 60] [--archs mingru,minlstm,gru,lstm] [--val-chars 20000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from rnnedge.quantization.q_run import graph_info, load_proto

from rnnedge.graphmeta import INPUT_IDS, LOGITS
from rnnedge.models import ModelConfig, build_model
from rnnedge.quantization import quantize_export
from rnnedge.vocab import CharVocab

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
OUT = Path(__file__).resolve().parent / "results" / "quantize_bench.json"
GOALS = {"dynamic_loss_delta": 0.005, "static_loss_delta": 0.01, "step_size_ratio": 0.3}


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


def export(model_or_ckpt, vocab: CharVocab | None, out: Path) -> Path:
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
    rounds so that both see the same load on a shared machine."""
    runs = []
    for path in paths:
        info = graph_info(load_proto(path), str(path))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        runs.append((info, sess, [LOGITS] + [s.output for s in info.states], []))
    for _ in range(rounds):
        for info, sess, outs, times in runs:
            states = {s.input: np.zeros((1, s.width), np.float32) for s in info.states}
            for t in range(steps):
                feed = {INPUT_IDS: np.array([t % len(info.vocab)], np.int64), **states}
                t0 = time.perf_counter()
                res = sess.run(outs, feed)
                times.append(time.perf_counter() - t0)
                states = {s.input: v for s, v in zip(info.states, res[1:], strict=True)}
    return [float(np.median(times) * 1e6) for *_, times in runs]


def bench_model(name: str, folder: Path, calib: Path, val: Path) -> dict:
    runs = {}
    configs = [("dynamic", False), ("dynamic", True), ("static", False), ("static", True)]
    for method, per_channel in configs:
        key = f"{method}{'_per_channel' if per_channel else ''}"
        t0 = time.perf_counter()
        res = quantize_export(folder, method=method, calib_text=calib, eval_text=val, per_channel=per_channel)
        step, par = res.graphs["step"], res.graphs["parallel"]
        fp32_us, int8_us = step_latencies_us([folder / "step.onnx", folder / "step.int8.onnx"])
        runs[key] = {
            "step_size_fp32": step["size_fp32"],
            "step_size_int8": step["size_int8"],
            "step_size_ratio": step["size_ratio"],
            "parallel_size_ratio": par["size_ratio"],
            "loss_fp32": step["loss_fp32"],
            "step_loss_delta": step["loss_delta"],
            "parallel_loss_delta": par["loss_delta"],
            "step_us_fp32": round(fp32_us, 1),
            "step_us_int8": round(int8_us, 1),
            "step_latency_ratio": round(int8_us / fp32_us, 3),
            "parallel_tensorrt_structural_ok": par["tensorrt"]["structural_ok"],
            "parallel_preprocess": par["preprocess"],
            "parallel_not_quantized_ops": par["not_quantized_ops"],
            "quantize_seconds": round(time.perf_counter() - t0, 1),
        }
        r = runs[key]
        print(
            f"  {name:8s} {key:20s} step {r['step_size_ratio']:.3f}x size, Δloss step {r['step_loss_delta']:+.5f} "
            f"parallel {r['parallel_loss_delta']:+.5f}, latency {r['step_latency_ratio']:.2f}x "
            f"({r['step_us_int8']:.0f} vs {r['step_us_fp32']:.0f} µs)",
            flush=True,
        )
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--archs", default="mingru,minlstm,gru,lstm")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=3)
    ap.add_argument("--val-chars", type=int, default=20000)
    ap.add_argument("--calib-chars", type=int, default=50000)
    ap.add_argument("--no-default", action="store_true")
    ap.add_argument("--merge", action="store_true", help="keep other models' entries from the existing JSON")
    args = ap.parse_args()
    torch.set_num_threads(2)
    text = DATA.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    vocab = CharVocab.from_text(text)
    results: dict = {
        "goals": GOALS,
        "val_chars": args.val_chars,
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
            info = graph_info(load_proto(folder / "step.onnx"), "step")
            results["models"]["default"] = {"config": info.config, "runs": bench_model("default", folder, calib, val)}
        else:
            results["models"]["default"] = {"skipped": f"no bundled default model at {default}"}
        for arch in [a for a in args.archs.split(",") if a]:
            print(arch, flush=True)
            model, steps, train_loss = train(arch, text[:cut], vocab, args.seconds, args.d_model, args.n_layers)
            folder = export(model, vocab, root / arch)
            entry = {
                "config": model.config.to_dict(),
                "trained_seconds": args.seconds,
                "train_steps": steps,
                "last_train_loss": train_loss,
                "runs": bench_model(arch, folder, calib, val),
            }
            if arch == "lstm":  # the counter-example: state-producing ops quantized too
                res = quantize_export(
                    folder, method="static", calib_text=calib, eval_text=val, quantize_state=True, graphs=("step",)
                )
                entry["quantize_state_counter_example"] = {
                    "step_loss_delta": res.graphs["step"]["loss_delta"],
                    "vs_state_float_static": entry["runs"]["static"]["step_loss_delta"],
                }
                print(f"  lstm --quantize-state: Δloss step {res.graphs['step']['loss_delta']:+.5f}", flush=True)
            results["models"][arch] = entry
            shutil.rmtree(folder, ignore_errors=True)
    if args.merge and OUT.is_file():  # keep entries of models not re-run this time
        old = json.loads(OUT.read_text())
        results["models"] = {**old.get("models", {}), **{k: v for k, v in results["models"].items() if "runs" in v}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
