"""Runtime benchmark on the bundled default model: the `rnnedge bench` figures plus tuning and a 100k-token stream.

    python benchmarks/runtime_bench.py [--model CKPT] [--threads 2] [--steps 3000] [--stream 100000]

Exports the checkpoint (rnnedge.exporter.export_model) into a temp folder, makes the int8 step graph
(rnnedge.quantization.quantize_export, dynamic; falls back to onnxruntime's quantize_dynamic), then runs
rnnedge.runtime.bench.run_bench with the PyTorch eager baseline in the same process. Also tries a few
ONNX Runtime session settings at batch 1 (the tuning table) and streams 100,000 sampled tokens.
Writes benchmarks/results/runtime_bench.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnedge._cli.torch_baseline import make_torch_baseline  # noqa: E402
from rnnedge.assets import default_model_path  # noqa: E402
from rnnedge.io import write_json  # noqa: E402
from rnnedge.runtime.bench import format_table, run_bench, step_latency  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
OUT = ROOT / "benchmarks" / "results" / "runtime_bench.json"


def make_int8(export: Path) -> str:
    """step.int8.onnx via `rnnedge quantize`'s dynamic method, checked on tiny-shakespeare."""
    from rnnedge.quantization import quantize_export

    quantize_export(export, method="dynamic", eval_text=str(DATA), graphs=("step",))
    return "rnnedge.quantization.quantize_export(method='dynamic')"


def tuning(step: Path, steps: int) -> list[dict[str, Any]]:
    """Batch-1 fp32 step p50 under a few session settings (threads, spinning)."""
    rows = []
    for threads, spin in ((1, None), (2, "1"), (2, "0")):
        cfg = None if spin is None else {"session.intra_op.allow_spinning": spin}
        lat = step_latency(step, 1, threads, steps=steps, session_config=cfg)["per_call_us"]
        rows.append({"threads": threads, "allow_spinning": spin, "p50_us": lat["p50"], "p99_us": lat["p99"]})
    return rows


def goals(res: dict[str, Any]) -> dict[str, Any]:
    r = res["ratios"]
    speed = r.get("speedup_fp32_vs_torch_batch1")
    floor_x = r.get("fp32_batch1_over_shape_floor")
    int8_x = r.get("int8_over_fp32_batch1")
    return {
        "step_batch1_speedup_vs_torch_eager": {"goal": ">= 10", "measured": speed, "met": bool(speed and speed >= 10)},
        "step_batch1_over_shape_floor": {"goal": "<= 3", "measured": floor_x, "met": bool(floor_x and floor_x <= 3)},
        "int8_over_fp32_batch1": {"goal": "<= 0.8", "measured": int8_x, "met": bool(int8_x and int8_x <= 0.8)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=default_model_path(), help="checkpoint folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--stream", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not (args.model / "config.json").is_file():
        sys.exit(f"runtime_bench: no checkpoint at {args.model} (train the default model first)")
    from rnnedge.exporter import export_model

    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        t0 = time.perf_counter()
        export_model(args.model, export)
        with contextlib.chdir(tmp):  # ORT's quantization tools may drop temp files into the cwd
            int8_source = make_int8(export)
        prep = time.perf_counter() - t0
        baseline = make_torch_baseline(export, steps=args.steps)
        if isinstance(baseline, str):
            sys.exit(f"runtime_bench: PyTorch baseline unavailable: {baseline}")
        res = run_bench(
            export, threads=args.threads, steps=args.steps, torch_baseline=baseline, stream_tokens=args.stream
        )
        res["tuning_batch1_fp32"] = tuning(export / "step.onnx", args.steps)
    res["export"] = f"(temp export of {args.model})"
    res["checkpoint"] = str(args.model)
    res["int8_source"] = int8_source
    res["prepare_seconds"] = prep
    res["goals"] = goals(res)
    print(format_table(res))
    print("tuning (batch 1, fp32):")
    for row in res["tuning_batch1_fp32"]:
        print(f"  threads={row['threads']} spinning={row['allow_spinning']}: p50 {row['p50_us']:.1f} µs")
    print(json.dumps(res["goals"], indent=1))
    write_json(args.out, res)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
