"""A speed floor for the step graph: its weight products against this machine's measured matmul rate.

Per token, the step graph's cost is dominated by its weight matrices (every other op is elementwise,
O(width) rather than O(width^2)). Which products one token runs is the step graph's own
`rnnedge.matmuls` metadata (GraphInfo.matmuls: (name, k, n) per product), written by the exporter
from each mixer's spec; a k->n product costs 2*k*n FLOPs per token. Two floors, in µs per step call:

  - `shape_floor`: numpy running exactly these products at the same batch, back to back, into
    preallocated outputs (min over repeats) -- what one dense-library call per weight costs here;
  - `peak_floor`: total FLOPs at the rate numpy reaches on a large square GEMM -- a hard lower bound
    no small-batch step can reach.

Numpy fixes its BLAS thread count at import, so `measure_floors` runs each count in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Matmuls = Sequence[Sequence[Any]]  # [(name, k, n), ...] as in GraphInfo.matmuls (lists after JSON)

UNAVAILABLE = (
    "floor not available: this step graph has no rnnedge.matmuls metadata (exported by an older "
    "rnnedge); re-export the checkpoint to measure it"
)


def flops_per_token(matmuls: Matmuls) -> int:
    """Matrix-product FLOPs (multiply + add) per token of one step."""
    return sum(2 * int(k) * int(n) for _, k, n in matmuls)


def _best_time(fn: Callable[[], Any], reps: int, inner: int) -> float:
    """Min over `reps` of the mean seconds of `inner` calls (the min filters out other processes' noise)."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def shape_floor_us(matmuls: Matmuls, batch: int, reps: int = 15, inner: int = 200) -> float:
    """µs numpy needs for one step's weight products at `batch` (float32, preallocated outputs)."""
    rng = np.random.default_rng(0)
    ops = []
    for _, k, n in matmuls:
        x = rng.standard_normal((batch, int(k)), dtype=np.float32)  # (B, k)
        w = rng.standard_normal((int(k), int(n)), dtype=np.float32)  # (k, n)
        ops.append((x, w, np.empty((batch, int(n)), dtype=np.float32)))  # (B, n)

    def step() -> None:
        for x, w, y in ops:
            np.matmul(x, w, out=y)

    return _best_time(step, reps, inner) * 1e6


def peak_gflops(size: int = 512, reps: int = 5) -> float:
    """GFLOP/s numpy reaches on a (size x size) @ (size x size) float32 GEMM."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    sec = _best_time(lambda: np.matmul(a, b, out=out), reps, 4)
    return 2 * size**3 / sec / 1e9


def floors(matmuls: Matmuls, batches: Sequence[int] = (1, 8)) -> dict[str, Any]:
    """FLOPs per token and both floors (µs per step call) at each batch, with this process's BLAS threads."""
    flops = flops_per_token(matmuls)
    peak = peak_gflops()
    out: dict[str, Any] = {
        "available": True,
        "flops_per_token": flops,
        "matmuls": [{"name": str(name), "k": int(k), "n": int(n)} for name, k, n in matmuls],
        "peak_gflops": peak,
    }
    for b in batches:
        shape_us = shape_floor_us(matmuls, b)
        out[f"batch{b}"] = {
            "shape_floor_us": shape_us,
            "shape_gflops": flops * b / shape_us / 1e3,
            "peak_floor_us": flops * b / peak / 1e3,
        }
    return out


def _floors_with_blas_threads(matmuls: Matmuls, batches: Sequence[int], threads: int) -> dict[str, Any]:
    """floors() in a subprocess whose BLAS uses `threads` threads."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    code = (
        "import json,sys;from rnnedge.runtime.floor import floors;"
        "print(json.dumps(floors(json.loads(sys.argv[1]), json.loads(sys.argv[2]))))"
    )
    args = [json.dumps([list(m) for m in matmuls]), json.dumps(list(batches))]
    try:
        done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (subprocess.CalledProcessError, OSError, ValueError, IndexError):
        return floors(matmuls, batches)  # same measurement in this process (BLAS threads as already set)


def measure_floors(matmuls: Matmuls, threads: int | None, batches: Sequence[int] = (1, 8)) -> dict[str, Any]:
    """The floors with 1 BLAS thread and with `threads`: the faster of the two at each batch.

    `{"available": False, "note": ...}` when `matmuls` is empty (a legacy graph without the metadata).
    """
    if not matmuls:
        return {"available": False, "note": UNAVAILABLE}
    runs = {n: _floors_with_blas_threads(matmuls, batches, n) for n in sorted({1, threads or 1})}
    best = dict(runs[1])
    best["peak_gflops"] = max(r["peak_gflops"] for r in runs.values())
    for b in batches:
        key = f"batch{b}"
        winner = min(runs, key=lambda n: runs[n][key]["shape_floor_us"])
        best[key] = {
            **runs[winner][key],
            "blas_threads": winner,
            "peak_floor_us": best["flops_per_token"] * b / best["peak_gflops"] / 1e3,
        }
    best["by_blas_threads"] = {str(n): {k: v for k, v in r.items() if k != "matmuls"} for n, r in runs.items()}
    return best
