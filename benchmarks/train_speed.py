"""Training speed: forward+backward time per batch of one minGRU / minLSTM layer.

Three variants of the same layer width, timed in one process, interleaved round by round:
  parallel   - the project's mixer (doubling parallel scan, what `rnnedge train` uses)
  sequential - the same math with the scan swapped for scan.sequential_scan, a loop over time
  fused      - torch's fused nn.GRU (for minGRU) / nn.LSTM (for minLSTM), same d_model and d_hidden
Ratios (sequential/parallel, fused/parallel) are the result; paper (T4 GPU, T=512): 175x minGRU,
235x minLSTM over the sequential form.

    python benchmarks/train_speed.py            # full run -> benchmarks/results/train_speed.json
    python benchmarks/train_speed.py --quick    # smoke run (small T, 1 repeat)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

import rnnedge.models.mingru as mingru_mod
import rnnedge.models.minlstm as minlstm_mod
from rnnedge.io import write_json
from rnnedge.models.gru import GRU
from rnnedge.models.lstm import LSTM
from rnnedge.models.mingru import MinGRU
from rnnedge.models.minlstm import MinLSTM
from rnnedge.models.scan import sequential_scan

RESULTS = Path(__file__).resolve().parent / "results" / "train_speed.json"


@contextlib.contextmanager
def sequential_mixers(loop: Callable[..., torch.Tensor]) -> Iterator[None]:
    """Swap the parallel scan for a loop over time inside minGRU and minLSTM (same math)."""

    def seq(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, levels: int | None = None):
        return loop(a, b, h0)

    saved = mingru_mod.linear_scan, minlstm_mod.linear_scan
    mingru_mod.linear_scan = minlstm_mod.linear_scan = seq  # type: ignore[assignment]
    try:
        yield
    finally:
        mingru_mod.linear_scan, minlstm_mod.linear_scan = saved


def fwd_bwd(layer: torch.nn.Module, x: torch.Tensor, loop: Callable[..., torch.Tensor] | None) -> Callable[[], None]:
    def run() -> None:
        ctx = sequential_mixers(loop) if loop is not None else contextlib.nullcontext()
        with ctx:
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


def bench(
    device: str,
    lengths: list[int],
    batch: int,
    d_model: int,
    d_hidden: int,
    repeats: int,
    budget: float,
):
    rows = []
    dev = torch.device(device)
    for arch, cls, fused_cls in (("mingru", MinGRU, GRU), ("minlstm", MinLSTM, LSTM)):
        torch.manual_seed(0)
        layer = cls(d_model, d_hidden).to(dev)
        fused = fused_cls(d_model, d_hidden).to(dev)
        for t_len in lengths:
            x = torch.randn(batch, t_len, d_model, device=dev, requires_grad=True)  # (B, T, D)
            variants = {
                "parallel": fwd_bwd(layer, x, None),
                "sequential": fwd_bwd(layer, x, sequential_scan),
                "fused": fwd_bwd(fused, x, None),
            }
            med = time_variants(variants, repeats, budget)
            row = {
                "device": device,
                "arch": arch,
                "fused_baseline": fused_cls.__name__.lower(),
                "seq_len": t_len,
                "parallel_ms": round(med["parallel"] * 1e3, 3),
                "sequential_ms": round(med["sequential"] * 1e3, 3),
                "fused_ms": round(med["fused"] * 1e3, 3),
                "speedup_vs_sequential": round(med["sequential"] / med["parallel"], 2),
                "speedup_vs_fused": round(med["fused"] / med["parallel"], 2),
            }
            rows.append(row)
            print(
                f"{device:4s} {arch:7s} T={t_len:5d}  parallel {row['parallel_ms']:9.2f} ms  "
                f"sequential {row['sequential_ms']:9.2f} ms ({row['speedup_vs_sequential']:.1f}x)  "
                f"fused {row['fused_baseline']} {row['fused_ms']:9.2f} ms ({row['speedup_vs_fused']:.2f}x)",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 512, 1024, 4096])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--d-hidden", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=20.0, help="Seconds per (arch, T) before stopping repeats.")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core box).")
    ap.add_argument("--devices", nargs="+", default=None, help="Default: cpu, plus cuda when available.")
    ap.add_argument("--quick", action="store_true", help="Smoke run: T in {64, 256}, 1 repeat.")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.lengths, args.repeats = [64, 256], 1
    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        rows += bench(device, args.lengths, args.batch, args.d_model, args.d_hidden, args.repeats, args.budget)
    write_json(
        args.out,
        {
            "benchmark": "train_speed",
            "what": "forward+backward time per batch of one mixer layer; median over interleaved rounds",
            "quick": args.quick,
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
