"""Runtime benchmark: the `rnnedge bench` figures per precision variant, plus tuning and a long stream.

    python benchmarks/runtime_bench.py [--model CKPT | --export DIR] [--variant int8-dynamic ...]
                                       [--data shakespeare|PATH] [--threads 2] [--steps 3000] [--stream 100000]

With `--model` (default: the bundled checkpoint) it exports the checkpoint into a temp folder
(rnnedge.exporter.export_model) and makes each `--variant` with rnnedge.quantization.quantize_export,
whose loss check reads `--data` ('shakespeare' is downloaded once to the cache, as the pipeline does).
With `--export` it benches an existing export folder as it is (e.g. one `rnnedge pipeline` wrote).
Then rnnedge.runtime.bench.run_bench with the PyTorch eager baseline (rnnedge.exporter.eager_baseline)
in the same process, a few ONNX Runtime session settings at batch 1 (the tuning table), and a
100,000-token sampled stream. Writes benchmarks/results/runtime_bench.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnedge.assets import default_model_path  # noqa: E402
from rnnedge.exporter.eager_baseline import make_eager_baseline  # noqa: E402
from rnnedge.io import write_json  # noqa: E402
from rnnedge.runtime.bench import run_bench, step_latency  # noqa: E402
from rnnedge.runtime.bench_report import format_table  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "runtime_bench.json"


@contextlib.contextmanager
def prepared_export(args: argparse.Namespace) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(export folder, how it was made): the given --export, or a temp export of --model with its variants."""
    if args.export is not None:
        yield args.export, {"export": str(args.export)}
        return
    from rnnedge.exporter import export_model
    from rnnedge.quantization import quantize_export
    from rnnedge.training.data import resolve_data

    data = resolve_data(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        t0 = time.perf_counter()
        export_model(args.model, export)
        for variant in args.variant:
            quantize_export(export, variant, eval_text=data)
        made = {"checkpoint": str(args.model), "variants_made": args.variant, "loss_check_text": str(data)}
        yield export, {**made, "prepare_seconds": time.perf_counter() - t0}


def tuning(step: Path, steps: int) -> list[dict[str, Any]]:
    """Batch-1 fp32 step p50 under a few session settings (threads, spinning)."""
    rows = []
    for threads, spin in ((1, None), (2, "1"), (2, "0")):
        cfg = None if spin is None else {"session.intra_op.allow_spinning": spin}
        lat = step_latency(step, 1, threads, steps=steps, session_config=cfg)["per_call_us"]
        rows.append({"threads": threads, "allow_spinning": spin, "p50_us": lat["p50"], "p99_us": lat["p99"]})
    return rows


def goals(res: dict[str, Any]) -> dict[str, Any]:
    """The batch-1 goals: >= 10x PyTorch eager, <= 3x the shape floor, the best variant <= 0.8x fp32."""
    r = res["ratios"]
    speed = r.get("speedup_fp32_vs_torch_batch1")
    floor_x = r.get("fp32_batch1_over_shape_floor")
    by_variant = {k.split("_over_fp32_")[0]: v for k, v in r.items() if k.endswith("_over_fp32_batch1")}
    best = min(by_variant.items(), key=lambda kv: kv[1]) if by_variant else None
    return {
        "step_batch1_speedup_vs_torch_eager": {"goal": ">= 10", "measured": speed, "met": bool(speed and speed >= 10)},
        "step_batch1_over_shape_floor": {"goal": "<= 3", "measured": floor_x, "met": bool(floor_x and floor_x <= 3)},
        "best_variant_over_fp32_batch1": {
            "goal": "<= 0.8",
            "variant": best[0] if best else None,
            "measured": best[1] if best else None,
            "met": bool(best and best[1] <= 0.8),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    source = ap.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, default=default_model_path(), help="checkpoint folder to export")
    source.add_argument("--export", type=Path, default=None, help="bench this export folder as it is")
    ap.add_argument("--variant", nargs="*", default=["int8-dynamic"], help="recipes to make from --model")
    ap.add_argument("--data", default="shakespeare", help="text for the variants' loss check (path or 'shakespeare')")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--stream", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.export is None and not (args.model / "config.json").is_file():
        sys.exit(f"runtime_bench: no checkpoint at {args.model}")
    with prepared_export(args) as (export, made):
        baseline = make_eager_baseline(export, steps=args.steps)
        if isinstance(baseline, str):
            print(f"runtime_bench: PyTorch baseline unavailable: {baseline}")
        res = run_bench(
            export, threads=args.threads, steps=args.steps, torch_baseline=baseline, stream_tokens=args.stream
        )
        res["tuning_batch1_fp32"] = tuning(export / "step.onnx", args.steps)
    res["prepared"] = made
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
