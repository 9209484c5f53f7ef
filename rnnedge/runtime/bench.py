"""`rnnedge bench`: step latency, parallel throughput, the floor, and an optional PyTorch baseline.

Everything here is ONNX Runtime + NumPy; the PyTorch figures come from a callable the CLI passes in
(rnnedge/_cli/torch_baseline.py), so this module never imports torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import GraphError
from rnnedge.graphmeta import GRAPH_FILES, INT8_FILES
from rnnedge.runtime import floor as floor_mod
from rnnedge.runtime.parallel import ParallelSession
from rnnedge.runtime.step import StepSession

TorchBaseline = Callable[[list[int], list[int], int], dict[str, Any]]


def percentiles_us(samples_ns: np.ndarray, per: int = 1) -> dict[str, float]:
    us = samples_ns / 1e3 / per
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)), "mean": float(us.mean())}


def step_latency(
    path: Path,
    batch: int,
    threads: int | None,
    steps: int = 3000,
    warmup: int = 200,
    session_config: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Latency of StepSession.feed (the whole Python call) in µs, per call and per token (call / batch)."""
    sess = StepSession(path, threads=threads, batch=batch, session_config=session_config)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(sess.vocab), size=(steps + warmup, batch))
    for t in range(warmup):
        sess.feed(ids[t], copy=False)
    samples = np.empty(steps, dtype=np.int64)
    clock = time.perf_counter_ns
    for t in range(steps):
        t0 = clock()
        sess.feed(ids[warmup + t], copy=False)
        samples[t] = clock() - t0
    return {"per_call_us": percentiles_us(samples), "per_token_us": percentiles_us(samples, batch), "steps": steps}


def parallel_throughput(path: Path, seq_len: int, threads: int | None, reps: int = 3) -> dict[str, Any]:
    """Tokens/s of the parallel graph over one sequence of seq_len tokens (batch 1; chunked to max_seq_len)."""
    sess = ParallelSession(path, threads=threads, chunk=None)
    chunk = min(seq_len, sess.info.max_seq_len or seq_len)
    sess.chunk = chunk
    ids = np.random.default_rng(0).integers(0, len(sess.vocab), size=(1, seq_len))

    def once() -> None:
        state = None
        for start in range(0, seq_len, chunk):
            _, state = sess.run(ids[:, start : start + chunk], state)

    once()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t0)
    return {"tokens_per_s": seq_len / best, "seconds": best, "chunk": chunk}


def long_stream(path: Path, tokens: int, threads: int | None, seed: int = 0) -> dict[str, Any]:
    """Sample `tokens` tokens (temperature 1) and track logits finiteness and the state's largest |value|."""
    from rnnedge.runtime.sampling import Sampler

    sess = StepSession(path, threads=threads)
    sampler = Sampler(temperature=1.0, seed=seed)
    logits = sess.feed(0, copy=False)
    max_state, finite = 0.0, True
    checkpoints = {}
    t0 = time.perf_counter()
    for t in range(1, tokens + 1):
        logits = sess.feed(sampler(logits), copy=False)
        if t % 1000 == 0:
            finite = finite and bool(np.isfinite(logits).all())
            m = max(float(np.abs(a).max()) for a in sess.state.values())
            max_state = max(max_state, m)
            if t in (1000, 10_000, tokens) or t % 25_000 == 0:
                checkpoints[str(t)] = m
    return {
        "tokens": tokens,
        "all_logits_finite": finite,
        "max_abs_state": max_state,
        "max_abs_state_at": checkpoints,
        "seconds": time.perf_counter() - t0,
    }


def _floors_with_blas_threads(config: dict[str, Any], threads: int) -> dict[str, Any]:
    """floor.floors() in a subprocess whose BLAS uses `threads` threads (numpy fixes that at import)."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    code = "import json,sys;from rnnedge.runtime.floor import floors;print(json.dumps(floors(json.loads(sys.argv[1]))))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(config)], env=env, capture_output=True, text=True, check=True
        )
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (subprocess.CalledProcessError, OSError, ValueError, IndexError):
        return floor_mod.floors(config)  # same measurement in this process (BLAS threads as already set)


def measure_floors(config: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """The floors with 1 BLAS thread and with `threads`: the faster of the two at each batch (the best dense rate)."""
    runs = {n: _floors_with_blas_threads(config, n) for n in sorted({1, threads or 1})}
    best = dict(runs[1])
    best["peak_gflops"] = max(r["peak_gflops"] for r in runs.values())
    for key in [k for k in best if k.startswith("batch")]:
        winner = min(runs, key=lambda n: runs[n][key]["shape_floor_us"])
        b = int(key[len("batch") :])
        best[key] = {
            **runs[winner][key],
            "blas_threads": winner,
            "peak_floor_us": best["flops_per_token"] * b / best["peak_gflops"] / 1e3,
        }
    best["by_blas_threads"] = {str(n): {k: v for k, v in r.items() if k != "matmuls"} for n, r in runs.items()}
    return best


def run_bench(
    export_dir: str | os.PathLike[str],
    threads: int | None = 2,
    steps: int = 3000,
    seq_lens: tuple[int, ...] = (512, 4096),
    batches: tuple[int, ...] = (1, 8),
    torch_baseline: TorchBaseline | None = None,
    stream_tokens: int = 0,
) -> dict[str, Any]:
    """All figures for one export folder (see docs/runtime.md for what each means)."""
    folder = Path(export_dir)
    step_fp32 = folder / GRAPH_FILES["step"]
    if not step_fp32.is_file():
        raise GraphError(f"{folder} has no {GRAPH_FILES['step']} (is it an `rnnedge export` folder?)")
    probe = StepSession(step_fp32, threads=threads)
    config = dict(probe.info.config)
    result: dict[str, Any] = {
        "export": str(folder),
        "arch": probe.info.arch,
        "config": config,
        "threads": threads,
        "onnxruntime": __import__("onnxruntime").__version__,
        "floor": measure_floors(config, threads),
        "step": {},
        "parallel": {},
    }
    graphs = {"fp32": step_fp32}
    if (folder / INT8_FILES["step"]).is_file():
        graphs["int8"] = folder / INT8_FILES["step"]
    for name, path in graphs.items():
        for b in batches:
            result["step"][f"{name}_batch{b}"] = step_latency(path, b, threads, steps=steps)
    par = folder / GRAPH_FILES["parallel"]
    if par.is_file():
        for t in seq_lens:
            result["parallel"][f"T{t}"] = parallel_throughput(par, t, threads)
    if stream_tokens:
        result["long_stream"] = long_stream(step_fp32, stream_tokens, threads)
    if torch_baseline is not None:
        result["torch"] = torch_baseline(list(batches), list(seq_lens), threads or 1)
    result["ratios"] = ratios(result, batches)
    return result


def ratios(result: dict[str, Any], batches: tuple[int, ...]) -> dict[str, Any]:
    """Each measured per-call time over the shape floor (and over the peak floor); speed-ups over torch."""
    out: dict[str, Any] = {}
    fl = result["floor"]
    for key, entry in result["step"].items():
        b = int(key.rsplit("batch", 1)[1])
        p50 = entry["per_call_us"]["p50"]
        out[f"{key}_over_shape_floor"] = p50 / fl[f"batch{b}"]["shape_floor_us"]
        out[f"{key}_over_peak_floor"] = p50 / fl[f"batch{b}"]["peak_floor_us"]
    for b in batches:
        f32, i8 = result["step"].get(f"fp32_batch{b}"), result["step"].get(f"int8_batch{b}")
        if f32 and i8:
            out[f"int8_over_fp32_batch{b}"] = i8["per_call_us"]["p50"] / f32["per_call_us"]["p50"]
    torch_res = result.get("torch") or {}
    for b in batches:
        t_step = torch_res.get("step", {}).get(f"batch{b}")
        if t_step:
            out[f"speedup_fp32_vs_torch_batch{b}"] = (
                t_step["p50"] / result["step"][f"fp32_batch{b}"]["per_call_us"]["p50"]
            )
    for key, entry in result["parallel"].items():
        t_par = torch_res.get("parallel", {}).get(key)
        if t_par:
            out[f"parallel_{key}_speedup_vs_torch"] = entry["tokens_per_s"] / t_par["tokens_per_s"]
    return out


def format_table(result: dict[str, Any]) -> str:
    """The readable summary `rnnedge bench` prints."""
    fl = result["floor"]
    torch_res = result.get("torch") or {}
    lines = [
        f"rnnedge bench  {result['export']}  arch={result['arch']}  threads={result['threads']}  "
        f"onnxruntime {result['onnxruntime']}",
        f"floor: {fl['flops_per_token'] / 1e6:.2f} MFLOP/token in weight products; numpy peak "
        f"{fl['peak_gflops']:.1f} GFLOP/s (512^3 GEMM)",
        "",
        f"{'step graph':<18}{'p50 µs/call':>12}{'p99 µs/call':>12}{'p50 µs/tok':>11}"
        f"{'shape floor':>12}{'x floor':>8}{'peak floor':>11}{'torch p50':>11}{'speed-up':>9}",
    ]
    for key, entry in result["step"].items():
        b = int(key.rsplit("batch", 1)[1])
        f = fl[f"batch{b}"]
        p50 = entry["per_call_us"]["p50"]
        t_step = torch_res.get("step", {}).get(f"batch{b}")
        torch_cell = f"{t_step['p50']:>11.1f}{t_step['p50'] / p50:>8.1f}x" if t_step else f"{'-':>11}{'-':>9}"
        lines.append(
            f"{key.replace('_', ' '):<18}{p50:>12.1f}{entry['per_call_us']['p99']:>12.1f}"
            f"{entry['per_token_us']['p50']:>11.1f}{f['shape_floor_us']:>12.1f}{p50 / f['shape_floor_us']:>7.2f}x"
            f"{f['peak_floor_us']:>11.1f}{torch_cell}"
        )
    if result["parallel"]:
        lines += ["", f"{'parallel graph':<18}{'tokens/s':>12}{'torch tok/s':>12}{'speed-up':>9}"]
        for key, entry in result["parallel"].items():
            t_par = torch_res.get("parallel", {}).get(key)
            cell = (
                f"{t_par['tokens_per_s']:>12.0f}{entry['tokens_per_s'] / t_par['tokens_per_s']:>8.2f}x"
                if t_par
                else f"{'-':>12}{'-':>9}"
            )
            lines.append(f"{key:<18}{entry['tokens_per_s']:>12.0f}{cell}")
    for b in (1, 8):
        r = result["ratios"].get(f"int8_over_fp32_batch{b}")
        if r is not None:
            lines.append(f"int8 / fp32 step time at batch {b}: {r:.2f}")
    if "torch" in result and result["torch"].get("skipped"):
        lines.append(f"PyTorch baseline skipped: {result['torch']['skipped']}")
    if "long_stream" in result:
        ls = result["long_stream"]
        lines.append(
            f"long stream: {ls['tokens']} tokens, logits finite={ls['all_logits_finite']}, "
            f"max |state|={ls['max_abs_state']:.3f}"
        )
    return "\n".join(lines)
