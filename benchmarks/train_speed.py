"""Training speed: forward+backward time per batch of one mixer layer, for every registered mixer.

Every mixer in rnnedge/models/registry.py is built at the same d_model and d_hidden (through its
MixerSpec) and timed as `rnnedge train` runs it. Mixers whose spec has `parallel_training` (minGRU,
minLSTM) are timed twice, interleaved round by round in one process:
  parallel   - the mixer as it trains (doubling parallel scan)
  sequential - the same layer with the scan swapped for scan.sequential_scan, a loop over time
The others (GRU, LSTM, Elman: torch's fused nn.GRU / nn.LSTM / nn.RNN) have no parallel form — the
recurrence is non-linear in h — so they are listed as sequential-only, and each parallel mixer's
row gives its speed-up over each of them too. Paper (T4 GPU, T = 512): minGRU 175x, minLSTM 235x.

    python benchmarks/train_speed.py            # full run -> benchmarks/results/train_speed.json
    python benchmarks/train_speed.py --quick    # smoke run (small T, 1 repeat)
    python benchmarks/train_speed.py --device cuda   # GPU suite (train_speed_cuda.py): doubling vs
        # fla-core fused vs log-space vs sequential vs cuDNN, fp32 and bf16 -> results/train_speed_cuda.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from sequential import parallel_mixers, sequential_scans

from rnnedge.io import write_json
from rnnedge.models import MIXER_NAMES, ModelConfig, mixer_spec

RESULTS = Path(__file__).resolve().parent / "results" / "train_speed.json"
CUDA_RESULTS = RESULTS.with_name("train_speed_cuda.json")


def fwd_bwd(layer: torch.nn.Module, x: torch.Tensor, sequential: bool) -> Callable[[], None]:
    def run() -> None:
        if sequential:
            with sequential_scans():
                y, _ = layer(x)  # (B, T, D)
        else:
            y, _ = layer(x)  # (B, T, D)
        y.square().mean().backward()
        layer.zero_grad(set_to_none=True)
        x.grad = None
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    return run


def time_variants(variants: dict[str, Callable[[], None]], repeats: int, budget_s: float) -> dict[str, float]:
    """Median seconds per call; variants alternate within each round so load changes hit all alike."""
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    start = time.perf_counter()
    for r in range(repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        if r >= 1 and time.perf_counter() - start > budget_s:
            break
    return {k: statistics.median(v) for k, v in times.items()}


def bench(device: str, archs: list[str], lengths: list[int], args: argparse.Namespace) -> list[dict]:
    dev = torch.device(device)
    parallel = [a for a in archs if a in parallel_mixers()]
    sequential_only = [a for a in archs if not mixer_spec(a).parallel_training]
    layers = {}
    for arch in archs:
        torch.manual_seed(0)
        config = ModelConfig(1, arch, 1, args.d_model, expansion=args.d_hidden / args.d_model)
        layers[arch] = mixer_spec(arch).build(config).to(dev)  # one mixer layer, as its spec builds it
    rows = []
    for t_len in lengths:
        x = torch.randn(args.batch, t_len, args.d_model, device=dev, requires_grad=True)  # (B, T, D)
        variants = {arch: fwd_bwd(layers[arch], x, sequential=False) for arch in archs}
        variants |= {f"{arch}/sequential": fwd_bwd(layers[arch], x, sequential=True) for arch in parallel}
        med = time_variants(variants, args.repeats, args.budget)
        for arch in archs:
            ms = med[arch] * 1e3
            row = {"device": device, "arch": arch, "seq_len": t_len, "ms": round(ms, 3)}
            if arch in parallel:
                row["training_form"] = "parallel scan"
                row["sequential_ms"] = round(med[f"{arch}/sequential"] * 1e3, 3)
                row["speedup_vs_sequential"] = round(med[f"{arch}/sequential"] / med[arch], 2)
                row["speedup_vs_sequential_only_mixers"] = {o: round(med[o] / med[arch], 2) for o in sequential_only}
            elif mixer_spec(arch).parallel_training:
                row["training_form"] = "parallel attention (no scan to compare with a loop)"
            else:
                row["training_form"] = "sequential only"
            rows.append(row)
            extra = (
                f"  sequential {row['sequential_ms']:9.2f} ms ({row['speedup_vs_sequential']:.2f}x)"
                if arch in parallel
                else f"  ({row['training_form']})"
            )
            print(f"{device:4s} {arch:8s} T={t_len:5d}  {row['ms']:9.2f} ms{extra}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=list(MIXER_NAMES), choices=MIXER_NAMES)
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 512, 1024, 4096])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--d-hidden", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=20.0, help="Seconds per T before stopping repeats.")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core box).")
    ap.add_argument("--devices", nargs="+", default=None, help="Default: cpu, plus cuda when available.")
    ap.add_argument("--quick", action="store_true", help="Smoke run: T in {64, 256}, 1 repeat.")
    ap.add_argument("--device", choices=["cuda"], help="cuda: the GPU suite of train_speed_cuda.py instead.")
    ap.add_argument("--sequential-max-t", type=int, default=4096, help="GPU suite: longest T timed as a loop.")
    ap.add_argument("--out", type=Path, default=None, help=f"Default {RESULTS} ({CUDA_RESULTS.name} for cuda).")
    args = ap.parse_args()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("train_speed.py --device cuda: torch sees no CUDA device here; nothing measured")
        from train_speed_cuda import run_cuda_suite

        write_json(args.out or CUDA_RESULTS, run_cuda_suite(args))
        print(f"wrote {args.out or CUDA_RESULTS}")
        return
    args.out = args.out or RESULTS
    if args.quick:
        args.lengths, args.repeats = [64, 256], 1
    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        rows += bench(device, args.archs, args.lengths, args)
    parallel = [a for a in args.archs if a in parallel_mixers()]
    write_json(
        args.out,
        {
            "benchmark": "train_speed",
            "what": "forward+backward time per batch of one mixer layer; median over interleaved rounds",
            "quick": args.quick,
            "parallel_mixers": parallel,
            "sequential_only_mixers": [a for a in args.archs if not mixer_spec(a).parallel_training],
            "sequential_only_note": "no parallel form (the recurrence is non-linear in h): timed as they train, "
            "with no scan-vs-sequential comparison; each parallel mixer's row lists its speed-up over them",
            "batch": args.batch,
            "d_model": args.d_model,
            "d_hidden": args.d_hidden,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "paper_reference": {"mingru_T512_speedup": 175, "minlstm_T512_speedup": 235, "device": "T4 GPU"},
            "results": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
