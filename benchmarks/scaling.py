"""Scaling benchmark: what a step and a sequence cost as the model grows, per mixer, precision and T.

    python benchmarks/scaling.py [--data shakespeare|PATH] [--presets small,medium,large] [--archs mingru,gru]
        [--recipes int8-dynamic,int4-weight] [--threads 1,2] [--seq-lens 256,1024,...] [--chunk-len 1024]
        [--drift-steps 10000] [--drift-checkpoint CKPT] [--quick] [--write [--out DIR]]

For an untrained model of each size preset (rnnedge/training/presets.py; weights change neither speed
nor memory) and each mixer (default: the registry), exported with a --max-seq-len covering the longest T:
  - per precision variant (fp32 + each --recipes via rnnedge.quantization.quantize_export, step graph):
    step latency p50 at batch 1 for each --threads, file bytes, the weight bytes a token reads, and the
    peak RSS of a streaming session, each measured in a fresh torch-free process
    (benchmarks/scaling_child.py);
  - the physical floor = weight bytes per token / this machine's copy bandwidth (benchmarks/membw.py,
    measured in the same run), and each variant's p50 over it;
  - the fp32 parallel graph's tokens/s and peak RSS at each T, the fitted exponent of time vs T (the
    doubling scan is O(T log T)), and for scan mixers the same T run in --chunk-len chunks through a
    graph exported with max_seq_len = --chunk-len (state carried between chunks).
Loss deltas need trained models: they are measured on the bundled default model (trained, the `small`
shape), one per recipe, on the held-out last 10% of --data. int8 drift runs on the --drift-preset
minGRU (untrained unless --drift-checkpoint gives a trained one, e.g. from `rnnedge train --preset
medium`) for --drift-steps (default: minutes on 2 cores). The full run, on a quiet machine:

    python benchmarks/scaling.py --write --drift-steps 100000 [--drift-checkpoint runs/medium]

Without --write it prints the summary only; --write writes benchmarks/results/scaling.json and
benchmarks/results/scaling/*.png (or into --out DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.membw import copy_bandwidth  # noqa: E402
from benchmarks.scaling_models import (  # noqa: E402
    Texts,
    drift_figures,
    export,
    loss_deltas,
    make_untrained,
    make_variants,
    read_texts,
    weight_bytes_per_token,
)
from benchmarks.scaling_plots import summary_lines, write_plots  # noqa: E402
from rnnedge.errors import RnnedgeError  # noqa: E402
from rnnedge.graphmeta import FP32, graph_file  # noqa: E402
from rnnedge.io import write_json  # noqa: E402
from rnnedge.models.registry import MIXER_NAMES, check_mixer_name, mixer_spec  # noqa: E402
from rnnedge.training.data import SHAKESPEARE  # noqa: E402
from rnnedge.training.presets import PRESETS, size_preset  # noqa: E402

CHILD = Path(__file__).resolve().parent / "scaling_child.py"
ALL_RECIPES = "int8-dynamic,int8-qdq,fp16,int8-weight,int4-weight"
FULL_SEQ_LENS = ",".join(str(256 << k) for k in range(9))  # 256 .. 65,536
QUICK = {
    "presets": "small",
    "archs": "mingru,gru",
    "recipes": "int8-dynamic,int4-weight",
    "threads": "1",
    "steps": 300,
    "step_seconds": 1.0,
    "seq_lens": "256,1024,4096",
    "chunk_len": 512,
    "drift_preset": "small",
    "drift_steps": 300,
    "drift_streams": 2,
}


def child(kind: str, path: Path, **options: Any) -> dict[str, Any]:
    """One measurement in a fresh torch-free process (benchmarks/scaling_child.py); {"error": ...} if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, str(CHILD), kind, str(path)]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:300]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def step_figures(path: Path, threads: list[int], args: argparse.Namespace, floor_us: float) -> dict[str, Any]:
    """p50/p99 µs per token at batch 1 for each thread count, the ratio to the floor, memory."""
    out: dict[str, Any] = {}
    for n in threads:
        r = child("step", path, threads=n, steps=args.steps, seconds=args.step_seconds)
        if "error" in r:
            out[f"threads{n}"] = r
            continue
        p50 = r["per_token_us"]["p50"]
        out[f"threads{n}"] = {
            "p50_us": p50,
            "p99_us": r["per_token_us"]["p99"],
            "steps": r["steps"],
            "over_floor": p50 / floor_us,
            "memory": r["memory"],
        }
    return out


def time_exponent(points: dict[int, float], from_t: int = 0) -> float | None:
    """Slope of log(seconds) vs log(T) over the points with T >= from_t (None with fewer than 2)."""
    ts = sorted(t for t in points if t >= from_t)
    if len(ts) < 2:
        return None
    return float(np.polyfit(np.log(ts), np.log([points[t] for t in ts]), 1)[0])


def parallel_sweep(path: Path, seq_lens: list[int], threads: int) -> dict[str, Any]:
    """tokens/s and memory of one parallel graph at each T (chunked to its max_seq_len), and the exponent."""
    rows: dict[str, Any] = {}
    seconds: dict[int, float] = {}
    for t in seq_lens:
        r = child("parallel", path, seq_len=t, threads=threads, reps=1 if t >= 16384 else 3)
        rows[f"T{t}"] = r
        if "error" not in r:
            seconds[t] = r["seconds"]
    return {
        "threads": threads,
        "by_T": rows,
        "time_exponent": time_exponent(seconds),
        "time_exponent_from_T4096": time_exponent(seconds, 4096),
    }


def measure_model(
    preset: str, arch: str, texts: Texts, args: argparse.Namespace, bandwidth: dict[str, Any], work: Path
) -> dict[str, Any]:
    """Everything for one (preset, mixer): its variants' step figures and the fp32 parallel sweep."""
    folder = work / f"{preset}-{arch}"
    ckpt, params, config = make_untrained(size_preset(preset), arch, texts.vocab, folder / "ckpt")
    t0 = time.perf_counter()
    export(ckpt, folder / "export", max(args.seq_lens))
    made, failed = make_variants(folder / "export", args.recipes, texts)
    llc = bandwidth["last_level_cache_bytes"]
    entry: dict[str, Any] = {
        "preset": preset,
        "arch": arch,
        "params": params,
        "config": config,
        "weights": "untrained (seeded init): speed and memory do not depend on the values",
        "prepare_seconds": round(time.perf_counter() - t0, 1),
        "variants": {},
        "quantize_failures": failed,
    }
    for variant in [FP32, *made]:
        step = folder / "export" / graph_file("step", variant)
        weights = weight_bytes_per_token(step)
        floor_us = weights["weight_bytes"] / (bandwidth["copy_gbps"] * 1e9) * 1e6
        entry["variants"][variant] = {
            "step_bytes": step.stat().st_size,
            **weights,
            "floor_us": floor_us,
            # weights that fit in the last-level cache are not read from DRAM each token: no floor then
            "fits_in_last_level_cache": bool(llc and weights["weight_bytes"] <= llc),
            "step": step_figures(step, args.threads, args, floor_us),
        }
        print(f"  {preset} {arch} {variant}: {json.dumps(entry['variants'][variant]['step'])[:160]}", flush=True)
    entry["parallel_bytes"] = (folder / "export" / "parallel.onnx").stat().st_size
    entry["parallel"] = parallel_sweep(folder / "export" / "parallel.onnx", args.seq_lens, max(args.threads))
    if args.chunk_len and mixer_spec(arch).uses_scan:
        export(ckpt, folder / "chunked", args.chunk_len)
        entry["parallel_chunked"] = {
            "chunk": args.chunk_len,
            **parallel_sweep(folder / "chunked" / "parallel.onnx", args.seq_lens, max(args.threads)),
        }
    shutil.rmtree(folder, ignore_errors=True)
    return entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=SHAKESPEARE, help="text file, or 'shakespeare' (downloaded once, cached)")
    ap.add_argument("--presets", default=",".join(PRESETS), help="size presets (rnnedge/training/presets.py)")
    ap.add_argument("--archs", default=",".join(MIXER_NAMES), help="registered mixers (default: all)")
    ap.add_argument("--recipes", default=ALL_RECIPES, help="precision recipes made for every model ('' = fp32 only)")
    ap.add_argument("--threads", default="1,2", help="ONNX Runtime intra-op threads for the step latency")
    ap.add_argument("--steps", type=int, default=2000, help="most timed steps per step measurement")
    ap.add_argument("--step-seconds", type=float, default=10.0, help="time budget per step measurement")
    ap.add_argument("--seq-lens", default=FULL_SEQ_LENS, help="T values of the parallel-graph sweep")
    ap.add_argument("--chunk-len", type=int, default=1024, help="chunked scan compared at each T (0 = off)")
    ap.add_argument("--drift-preset", default="medium", help="preset of the minGRU whose int8 drift is measured")
    ap.add_argument("--drift-checkpoint", type=Path, default=None, help="a trained checkpoint to measure drift on")
    ap.add_argument("--drift-recipe", default="int8-dynamic")
    ap.add_argument("--drift-steps", type=int, default=10_000, help="0 = no drift run; the full run uses 100000")
    ap.add_argument("--drift-streams", type=int, default=4)
    ap.add_argument("--membw-mib", type=int, default=None, help="copy buffer (default: 4x the last-level cache)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: " + json.dumps(QUICK))
    ap.add_argument("--write", action="store_true", help="write scaling.json and the plots into --out")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where --write writes")
    args = ap.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv or sys.argv[1:]) if a.startswith("--")}
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    args.presets = [size_preset(p).name for p in args.presets.split(",") if p]
    args.archs = [check_mixer_name(a) for a in args.archs.split(",") if a]
    args.recipes = [r for r in args.recipes.split(",") if r]
    args.threads = [int(n) for n in args.threads.split(",") if n]
    args.seq_lens = sorted({int(t) for t in args.seq_lens.split(",") if t})
    size_preset(args.drift_preset)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rnnedge-scaling-"))
    started, load_before = time.time(), os.getloadavg()
    models = []
    try:
        texts = read_texts(args.data, work)
        bandwidth = copy_bandwidth(None if args.membw_mib is None else args.membw_mib << 20)
        print(f"memory bandwidth (copy): {bandwidth['copy_gbps']:.1f} GB/s", flush=True)
        for preset in args.presets:
            for arch in args.archs:
                print(f"{preset} {arch}", flush=True)
                models.append(measure_model(preset, arch, texts, args, bandwidth, work))
        deltas = loss_deltas(args.recipes, texts, work / "default")
        drift = drift_figures(args, texts, work / "drift") if args.drift_steps else {"skipped": "--drift-steps 0"}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import onnxruntime

    result = {
        "benchmark": "scaling",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
            "load_average_start": load_before,
            "load_average_end": os.getloadavg(),
            "memory_bandwidth": bandwidth,
        },
        "data": texts.source,
        "models": models,
        "loss_deltas": deltas,
        "drift": drift,
        "seconds": round(time.time() - started, 1),
    }
    print("\n".join(summary_lines(result)))
    if args.write:
        result["plots"] = write_plots(result, args.out / "scaling")
        write_json(args.out / "scaling.json", result)
        print(f"wrote {args.out / 'scaling.json'} and {len(result['plots'])} plots in {args.out / 'scaling'}")


if __name__ == "__main__":
    try:
        main()
    except RnnedgeError as exc:  # bad --data, offline without a cached text, an unknown preset or mixer
        raise SystemExit(f"scaling: {exc}") from None
