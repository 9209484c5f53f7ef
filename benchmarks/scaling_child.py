"""One measurement of `benchmarks/scaling.py` in a fresh, torch-free process, so that its resident memory
is the session's own (plus Python, NumPy and ONNX Runtime) and no earlier session's threads or heap
disturb it. Prints one JSON object.

    python benchmarks/scaling_child.py step STEP.onnx --threads 1 --steps 2000 --seconds 10
    python benchmarks/scaling_child.py parallel PARALLEL.onnx --seq-len 65536 --threads 2 --reps 1

`step`: rnnedge.runtime.bench.step_latency at batch 1 (µs per token, and RSS before the session, after
making it, after streaming, and the peak). `parallel`: rnnedge.runtime.bench.parallel_throughput on one
sequence of --seq-len tokens (tokens/s, and the same memory figures).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnedge.runtime.bench import parallel_throughput, step_latency


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("kind", choices=("step", "parallel"))
    ap.add_argument("path", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2000, help="step: most timed steps")
    ap.add_argument("--seconds", type=float, default=10.0, help="step: stop timing after this long")
    ap.add_argument("--seq-len", type=int, default=4096, help="parallel: tokens in the sequence")
    ap.add_argument("--reps", type=int, default=3, help="parallel: timed runs after the warm-up (best)")
    args = ap.parse_args()
    if args.kind == "step":
        warmup = min(200, max(10, args.steps // 10))
        result = step_latency(args.path, 1, args.threads, steps=args.steps, warmup=warmup, seconds=args.seconds)
    else:
        result = parallel_throughput(args.path, args.seq_len, args.threads, reps=args.reps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
