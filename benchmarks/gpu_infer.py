"""GPU inference benchmark: ONNX Runtime's CUDA EP against PyTorch eager, on one checkpoint and one GPU.

    python benchmarks/gpu_infer.py [--model CKPT] [--data shakespeare|PATH] [--seq-len 4096] [--no-fp16]

The checkpoint (default: the bundled minGRU) is exported to a temp folder at --seq-len, and when
rnnedge.quantization has the `fp16` recipe its fp16 variant is made there too (its loss check reads
--data). Figures, all measured in this process on the same GPU:
- parallel graph at B in {1, 16, 64}, T = --seq-len: tokens/s of ORT CUDA with ids, state and logits
  bound on the device, and fed host NumPy arrays as ParallelSession does; PyTorch eager on the same
  checkpoint with the doubling scan and (when fla-core imports) the fused scan; max |logit| difference
  of ORT CUDA (TF32 off; fp32 and fp16) and of eager against the fp32 graph on ORT's CPU EP at B = 1.
- step graph at batch 1 and 256: tokens/s of StepSession on CUDA (state on the device), with and
  without CUDA graphs (or ORT's reason for refusing them), logits fetched every token and only at the
  end; the same on the CPU; max |logit| difference against the fp32 step graph on the CPU, 200 tokens.
- Memcpy nodes ORT places for each graph on the CUDA EP.
Writes benchmarks/results/gpu_infer.json with torch.cuda.get_device_name().
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnedge.assets import default_model_path  # noqa: E402
from rnnedge.errors import GraphError, RnnedgeError  # noqa: E402
from rnnedge.graphmeta import FP32, INPUT_IDS, graph_file  # noqa: E402
from rnnedge.inference import GraphSession, ProviderChoice, memcpy_nodes, open_graph  # noqa: E402
from rnnedge.io import write_json  # noqa: E402
from rnnedge.models import fused_scan  # noqa: E402
from rnnedge.models.fused_scan import forced_scan  # noqa: E402
from rnnedge.runtime import StepSession  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "gpu_infer.json"
BATCHES, STEP_BATCHES = (1, 16, 64), (1, 256)


def best_seconds(fn: Callable[[], Any], reps: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def device_bound(graph: GraphSession, ids: np.ndarray, device: str) -> Callable[[], None]:
    """One parallel-graph call with ids and zero state on `device` and the outputs left there by ORT."""
    binding = graph.session.io_binding()
    binding.bind_ortvalue_input(INPUT_IDS, ort.OrtValue.ortvalue_from_numpy(ids, device, 0))
    for s, zero in zip(graph.info.states, graph.zero_states(ids.shape[0]), strict=True):
        binding.bind_ortvalue_input(s.input, ort.OrtValue.ortvalue_from_numpy(zero, device, 0))
    for name in graph.outputs:
        binding.bind_output(name, device)
    return lambda: graph.session.run_with_iobinding(binding)


def parallel_figures(folder: Path, variant: str, model: Any, seq_len: int, reps: int, device: str) -> dict[str, Any]:
    provider = "cuda" if device == "cuda" else "cpu"
    path = folder / graph_file("parallel", variant)
    graph = open_graph(path, "parallel", provider)
    cpu = open_graph(folder / graph_file("parallel", FP32), "parallel", "cpu")  # the reference: fp32 on the CPU
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out: dict[str, Any] = {}
    for batch in BATCHES:
        ids = np.random.default_rng(batch).integers(0, len(graph.info.vocab), size=(batch, seq_len))  # (B, T)
        zeros = graph.zero_states(batch)
        host = lambda ids=ids, zeros=zeros: graph.run(ids, zeros)  # noqa: E731
        row: dict[str, Any] = {
            "ort_device_bound": batch * seq_len / best_seconds(device_bound(graph, ids, device), reps, sync),
            "ort_host_numpy": batch * seq_len / best_seconds(host, reps, sync),
        }
        if model is not None:
            x = torch.from_numpy(ids).to(device)
            for mode in ("doubling", "fused"):
                if mode == "fused" and (device != "cuda" or fused_scan.fla_kernel() is None):
                    continue
                with torch.inference_mode(), forced_scan(mode):
                    row[f"torch_eager_{mode}"] = batch * seq_len / best_seconds(lambda x=x: model(x), reps, sync)
        row = {k: round(v) for k, v in row.items()}
        if "torch_eager_doubling" in row:
            row["ort_device_bound_vs_eager_doubling"] = round(row["ort_device_bound"] / row["torch_eager_doubling"], 2)
        if batch == 1:
            ref = cpu.run(ids, cpu.zero_states(1))[0]  # (1, T, V)
            row["max_abs_logit_diff_vs_fp32_cpu"] = float(np.abs(graph.run(ids, graph.zero_states(1))[0] - ref).max())
            if model is not None:
                with torch.inference_mode(), forced_scan("auto"):
                    eager = model(torch.from_numpy(ids).to(device))[0].float().cpu().numpy()
                row["eager_auto_scan_max_abs_logit_diff_vs_cpu_ort"] = float(np.abs(eager - ref).max())
        out[f"B{batch}"] = row
        print(f"parallel {variant} B={batch} T={seq_len}: {row}", flush=True)
    return out


def step_figures(folder: Path, variant: str, steps: int, device: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    provider = "cuda" if device == "cuda" else "cpu"
    choices: dict[str, Any] = {"cpu": "cpu", provider: provider}
    if device == "cuda":
        choices["cuda_graph"] = ProviderChoice("cuda", cuda_graph=True)
    path = folder / graph_file("step", variant)
    for name, choice in choices.items():
        for batch in STEP_BATCHES:
            try:
                sess = StepSession(path, providers=choice, batch=batch)
            except GraphError as exc:  # e.g. ORT refuses CUDA graphs for nodes outside the CUDA EP
                out[f"{name}/batch{batch}"] = {"refused": str(exc)}
                continue
            ids = np.random.default_rng(0).integers(0, len(sess.vocab), size=(steps + 50, batch))  # (steps, B)
            for t in range(50):
                sess.feed(ids[t], copy=False)
            t0 = time.perf_counter()
            for t in range(50, steps + 50):
                sess.feed(ids[t], copy=False)
            every = batch * steps / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            sess.feed_sequence(ids[:steps, 0])
            at_end = batch * steps / (time.perf_counter() - t0)
            row = {
                "tokens_per_s": round(every),
                "tokens_per_s_logits_at_end": round(at_end),
                "state_on": sess.describe()["state_on"],
            }
            out[f"{name}/batch{batch}"] = row
            print(f"step {variant} {name} batch={batch}: {row}", flush=True)
    ref, gpu = StepSession(folder / graph_file("step", FP32), providers="cpu"), StepSession(path, providers=provider)
    ids = np.random.default_rng(1).integers(0, len(ref.vocab), size=200)
    out["max_abs_logit_diff_vs_fp32_cpu"] = max(float(np.abs(gpu.feed(int(i)) - ref.feed(int(i))).max()) for i in ids)
    return out


def make_fp16(folder: Path, data: str) -> dict[str, Any]:
    """The fp16 variant via rnnedge.quantization's `fp16` recipe, or why there is none."""
    try:
        from rnnedge.quantization import PRESETS, quantize_export
        from rnnedge.training.data import resolve_data
    except ImportError as exc:
        return {"skipped": f"rnnedge.quantization does not provide the recipes here ({exc})"}
    if "fp16" not in PRESETS:
        return {"skipped": "rnnedge.quantization has no fp16 recipe in this checkout"}
    try:
        result = quantize_export(folder, "fp16", eval_text=resolve_data(data))
    except RnnedgeError as exc:
        return {"skipped": f"fp16 variant not made: {exc}"}
    return {"made": True, "manifest": result.manifest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=default_model_path(), help="Checkpoint folder (default: bundled).")
    ap.add_argument("--data", default="shakespeare", help="Text for the fp16 variant's loss check.")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=2000, help="Timed step-graph tokens per configuration.")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-fp16", action="store_true", help="Skip the fp16 variant.")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not torch.cuda.is_available() or "CUDAExecutionProvider" not in ort.get_available_providers():
        raise SystemExit("gpu_infer.py: needs a CUDA device and onnxruntime-gpu's CUDA EP; nothing measured")
    write_json(args.out, run(args, "cuda"))
    print(f"wrote {args.out}")


def run(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Every figure of the module docstring (`device` is 'cuda' but for a smoke run elsewhere)."""
    from rnnedge.exporter import export_model
    from rnnedge.training.checkpoint import load_checkpoint

    model = load_checkpoint(args.model).model.to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "export"
        export_model(args.model, folder, max_seq_len=args.seq_len, verify=False)
        variants = {FP32: {"made": True}} | ({} if args.no_fp16 else {"fp16": make_fp16(folder, args.data)})
        result: dict[str, Any] = {
            "benchmark": "gpu_infer",
            "device": torch.cuda.get_device_name() if device == "cuda" else device,
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            "fla": fused_scan.fla_status(),
            "checkpoint": str(args.model),
            "seq_len": args.seq_len,
            "variants": variants,
            "parallel": {},
            "step": {},
            "memcpy_nodes": {},
        }
        for variant, made in variants.items():
            if not made.get("made"):
                continue
            eager = model if variant == FP32 else None
            result["parallel"][variant] = parallel_figures(folder, variant, eager, args.seq_len, args.reps, device)
            result["step"][variant] = step_figures(folder, variant, args.steps, device)
            provider = "cuda" if device == "cuda" else "cpu"
            result["memcpy_nodes"][variant] = {
                kind: memcpy_nodes(folder / graph_file(kind, variant), provider) for kind in ("parallel", "step")
            }
    return result


if __name__ == "__main__":
    main()
