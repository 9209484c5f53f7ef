"""`rnnedge bench`: step latency per precision variant, parallel throughput, the floor, state memory, a
long sampled stream, and an optional PyTorch eager baseline.

Everything here is ONNX Runtime + NumPy; the PyTorch figures come from a callable the caller passes
in (rnnedge/exporter/eager_baseline.py), so this module never imports torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import GraphError, InputError
from rnnedge.graphmeta import FP32, list_variants
from rnnedge.inference import graph_path
from rnnedge.inference.providers import ProviderArg
from rnnedge.progress import Stages, plan, stage
from rnnedge.runtime.bench_report import ratios
from rnnedge.runtime.floor import measure_floors
from rnnedge.runtime.memory import measure_resident
from rnnedge.runtime.parallel import ParallelSession
from rnnedge.runtime.sampling import Sampler
from rnnedge.runtime.step import StepSession

# (batches, seq_lens, threads) -> {"step": {"batch1": {"p50", "p99"}}, "parallel": {"T512": {"tokens_per_s"}}}
TorchBaseline = Callable[[list[int], list[int], int], dict[str, Any]]
MIN_STEPS = 50  # timed steps step_latency takes at least, whatever its time budget
STREAM_CHECK_EVERY = 1000  # tokens between state checks in long_stream (and always at the last token)


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
    providers: ProviderArg = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Latency of StepSession.feed (the whole Python call) in µs, per call and per token (call / batch),
    and the process's resident memory around making the session and running its steps (`memory`).

    `seconds`: stop timing once the timed steps have taken this long (after at least MIN_STEPS);
    `steps` then is how many were timed.
    """
    ids = np.random.default_rng(0).integers(0, 2**31, size=(steps + warmup, batch))  # (steps, B), taken mod V
    samples = np.empty(steps, dtype=np.int64)
    budget_ns = None if seconds is None else int(seconds * 1e9)
    timed = [steps]

    def make() -> StepSession:
        return StepSession(path, providers=providers, threads=threads, batch=batch, session_config=session_config)

    def run(sess: StepSession) -> None:
        np.remainder(ids, len(sess.vocab), out=ids)
        for t in range(warmup):
            sess.feed(ids[t], copy=False)
        clock = time.perf_counter_ns
        start = clock()
        for t in range(steps):
            t0 = clock()
            sess.feed(ids[warmup + t], copy=False)
            samples[t] = clock() - t0
            if budget_ns is not None and t + 1 >= MIN_STEPS and samples[t] + t0 - start >= budget_ns:
                timed[0] = t + 1
                break

    _, memory = measure_resident(make, run)
    done = samples[: timed[0]]
    return {
        "per_call_us": percentiles_us(done),
        "per_token_us": percentiles_us(done, batch),
        "steps": timed[0],
        "memory": memory,
    }


def parallel_throughput(
    path: Path, seq_len: int, threads: int | None, reps: int = 3, providers: ProviderArg = None
) -> dict[str, Any]:
    """Tokens/s of the parallel graph over one sequence of seq_len tokens (batch 1; chunked to max_seq_len),
    best of `reps` runs after a warm-up run, and the process's resident memory around it (`memory`)."""
    ids = np.random.default_rng(0).integers(0, 2**31, size=(1, seq_len))  # (1, T), taken mod V
    timing: dict[str, Any] = {}

    def make() -> ParallelSession:
        return ParallelSession(path, providers=providers, threads=threads)

    def run(sess: ParallelSession) -> None:
        np.remainder(ids, len(sess.vocab), out=ids)
        chunk = min(seq_len, sess.info.max_seq_len or seq_len)

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
        timing.update(tokens_per_s=seq_len / best, seconds=best, chunk=chunk)

    _, memory = measure_resident(make, run)
    return {**timing, "memory": memory}


def long_stream(
    path: Path,
    tokens: int,
    threads: int | None,
    seed: int = 0,
    providers: ProviderArg = None,
    check_every: int = STREAM_CHECK_EVERY,
) -> dict[str, Any]:
    """Sample `tokens` tokens (temperature 1): logits finite at every token, and the floating-point
    states' finiteness and largest |value| every `check_every` tokens and at the last one."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise InputError(f"a stream needs at least 1 token, got {tokens!r}")
    sess = StepSession(path, providers=providers, threads=threads)
    floats = [s.name for s in sess.info.states if s.dtype.startswith("float")]
    sampler = Sampler(temperature=1.0, seed=seed)
    every = min(check_every, tokens)
    logits = sess.feed(0, copy=False)
    logits_finite, states_finite, max_state = True, True, 0.0
    at: dict[str, float] = {}
    t0 = time.perf_counter()
    for t in range(1, tokens + 1):
        logits = sess.feed(sampler(logits), copy=False)  # (1, V)
        logits_finite = logits_finite and bool(np.isfinite(logits).all())
        if t % every and t != tokens:
            continue
        state = sess.state
        states_finite = states_finite and all(bool(np.isfinite(state[n]).all()) for n in floats)
        largest = max((float(np.abs(state[n]).max()) for n in floats), default=0.0)
        max_state = max(max_state, largest)
        if t in (every, 10 * every, tokens) or t % 25_000 == 0:
            at[str(t)] = largest
    return {
        "tokens": tokens,
        "all_logits_finite": logits_finite,
        "all_states_finite": states_finite,
        "max_abs_state": max_state,
        "max_abs_state_at": at,
        "checked_every": every,
        "seconds": time.perf_counter() - t0,
    }


def bench_variants(folder: Path, variants: Sequence[str] | None = None) -> dict[str, dict[str, Path]]:
    """{variant: {kind: path}} to measure: fp32 plus every variant with a step graph, or plus the named ones.

    GraphError (listing what the folder has) when fp32 or a named variant has no step graph.
    """
    present = {v: kinds for v, kinds in list_variants(folder).items() if "step" in kinds}
    graph_path(folder, "step", FP32)  # one line if the folder has no step.onnx
    wanted = list(present) if not variants else [FP32, *dict.fromkeys(v for v in variants if v != FP32)]
    for v in wanted:
        graph_path(folder, "step", v)
    return {v: present[v] for v in wanted}


def run_bench(
    export_dir: str | os.PathLike[str],
    threads: int | None = 2,
    steps: int = 3000,
    seq_lens: tuple[int, ...] = (512, 4096),
    batches: tuple[int, ...] = (1, 8),
    variants: Sequence[str] | None = None,
    providers: ProviderArg = None,
    torch_baseline: TorchBaseline | str | None = None,
    stream_tokens: int = 0,
    stages: Stages | None = None,
) -> dict[str, Any]:
    """All figures for one export folder (see docs/runtime.md for what each means).

    `variants`: None compares fp32 with every variant that has a step graph; else fp32 and these.
    `torch_baseline`: the eager baseline, or the reason it could not be made (reported as skipped).
    `stream_tokens`: 0 = no long stream; otherwise sample that many tokens through the fp32 step graph.
    `stages`: progress, one stage per measurement (rnnedge.progress).
    """
    folder = Path(export_dir)
    if not folder.is_dir():
        raise GraphError(f"export folder not found: {folder}")
    if isinstance(stream_tokens, bool) or not isinstance(stream_tokens, int) or stream_tokens < 0:
        raise InputError(f"stream_tokens must be >= 0 (0 = no stream), got {stream_tokens!r}")
    chosen = bench_variants(folder, variants)
    timed = sum(len(batches) + (len(seq_lens) if "parallel" in files else 0) for files in chosen.values())
    plan(stages, 2 + timed + bool(stream_tokens) + (torch_baseline is not None and not isinstance(torch_baseline, str)))
    stage(stages, f"opening {len(chosen)} variant(s)")
    probes = {v: StepSession(files["step"], providers=providers, threads=threads) for v, files in chosen.items()}
    fp32 = probes[FP32]
    result: dict[str, Any] = {
        "export": str(folder),
        "arch": fp32.info.arch,
        "config": dict(fp32.info.config),
        "threads": threads,
        "providers": fp32.describe()["providers"],
        "onnxruntime": __import__("onnxruntime").__version__,
        "variants": {
            v: {
                "files": {kind: path.name for kind, path in chosen[v].items()},
                "recipe": probe.info.recipe,
                "step_bytes": chosen[v]["step"].stat().st_size,
                "state_bytes_per_stream": probe.state_bytes_per_stream,
            }
            for v, probe in probes.items()
        },
        "states": fp32.describe()["states"],
        "floor": None,
        "step": {},
        "parallel": {},
    }
    stage(stages, "NumPy floor of the step's weight products")
    result["floor"] = measure_floors(fp32.info.matmuls, threads, batches)
    for v, files in chosen.items():
        result["step"][v] = {}
        for b in batches:
            stage(stages, f"{v}: step latency, batch {b} ({steps} steps)")
            result["step"][v][f"batch{b}"] = step_latency(files["step"], b, threads, steps=steps, providers=providers)
        if "parallel" in files:
            result["parallel"][v] = {}
            for t in seq_lens:
                stage(stages, f"{v}: parallel tokens/s, T = {t}")
                result["parallel"][v][f"T{t}"] = parallel_throughput(files["parallel"], t, threads, providers=providers)
    if stream_tokens:
        stage(stages, f"fp32: a {stream_tokens}-token stream")
        result["long_stream"] = long_stream(chosen[FP32]["step"], stream_tokens, threads, providers=providers)
    if torch_baseline is None:
        result["torch"] = {"skipped": "not requested"}
    elif isinstance(torch_baseline, str):
        result["torch"] = {"skipped": torch_baseline}
    else:
        stage(stages, "PyTorch eager baseline")
        result["torch"] = torch_baseline(list(batches), list(seq_lens), threads or 1)
    result["ratios"] = ratios(result)
    return result
