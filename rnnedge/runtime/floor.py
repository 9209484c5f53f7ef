"""A speed floor for the step graph: its matrix-product FLOPs against this machine's measured matmul rate.

Per token, the step graph's cost is dominated by its weight matrices (every other op is elementwise,
O(width) rather than O(width^2)). From the model config (rnnedge.config metadata; no onnx needed):

    per layer  mixer in   mingru d->2H   minlstm d->3H   gru d->3H + H->3H   lstm d->4H + H->4H
               mixer out  H->d           MLP  d->M, M->d
    head       d->V                       (a k->n product costs 2*k*n FLOPs per token)

Two floors come out of it, both in µs per step call:
  - `shape_floor`: numpy running exactly these products at the same batch, back to back, into
    preallocated outputs (min over repeats) -- what one dense-library call per weight costs here;
  - `peak_floor`: total FLOPs at the rate numpy reaches on a large square GEMM -- a hard lower bound
    no small-batch step can reach.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

_MIXER_IN = {"mingru": (2, 0), "minlstm": (3, 0), "gru": (3, 3), "lstm": (4, 4)}  # (x-side, h-side) gate counts


def matmul_shapes(config: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(name, k, n) of every weight product of one step (from a ModelConfig dict)."""
    d = int(config["d_model"])
    h = round(float(config.get("expansion", 2.0)) * d)
    m = round(float(config.get("mlp_ratio", 4.0)) * d)
    v = int(config["vocab_size"])
    x_gates, h_gates = _MIXER_IN[str(config["arch"])]
    shapes: list[tuple[str, int, int]] = []
    for layer in range(int(config["n_layers"])):
        shapes.append((f"{layer}.mixer_x", d, x_gates * h))
        if h_gates:
            shapes.append((f"{layer}.mixer_h", h, h_gates * h))
        shapes += [(f"{layer}.mixer_out", h, d), (f"{layer}.mlp_up", d, m), (f"{layer}.mlp_down", m, d)]
    shapes.append(("head", d, v))
    return shapes


def flops_per_token(config: dict[str, Any]) -> int:
    """Matrix-product FLOPs (multiply + add) per token of one step."""
    return sum(2 * k * n for _, k, n in matmul_shapes(config))


def _best_time(fn: Any, reps: int, inner: int) -> float:
    """Min over `reps` of the mean seconds of `inner` calls (the min filters out other processes' noise)."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def shape_floor_us(config: dict[str, Any], batch: int, reps: int = 15, inner: int = 200) -> float:
    """µs numpy needs for one step's weight products at `batch` (float32, preallocated outputs)."""
    rng = np.random.default_rng(0)
    ops = []
    for _, k, n in matmul_shapes(config):
        x = rng.standard_normal((batch, k), dtype=np.float32)
        w = rng.standard_normal((k, n), dtype=np.float32)
        ops.append((x, w, np.empty((batch, n), dtype=np.float32)))

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


def floors(config: dict[str, Any], batches: tuple[int, ...] = (1, 8)) -> dict[str, Any]:
    """FLOPs per token and both floors (µs per step call) at each batch."""
    flops = flops_per_token(config)
    peak = peak_gflops()
    out: dict[str, Any] = {
        "flops_per_token": flops,
        "matmuls": [{"name": n, "k": k, "n": m} for n, k, m in matmul_shapes(config)],
        "peak_gflops": peak,
    }
    for b in batches:
        shape_us = shape_floor_us(config, b)
        out[f"batch{b}"] = {
            "shape_floor_us": shape_us,
            "shape_gflops": flops * b / shape_us / 1e3,
            "peak_floor_us": flops * b / peak / 1e3,
        }
    return out
