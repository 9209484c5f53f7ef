"""PyTorch eager figures for `rnnedge bench` (optional: only when torch imports and the checkpoint loads).

Kept out of rnnedge/runtime so the runtime never imports torch; torch is imported inside the function.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import RnnedgeError
from rnnedge.graphmeta import MANIFEST
from rnnedge.io import read_json


def checkpoint_of(export_dir: Path) -> Path | None:
    """The checkpoint folder an export's manifest names (source.checkpoint), if it still exists."""
    try:
        manifest = read_json(export_dir / MANIFEST, "manifest")
    except RnnedgeError:
        return None
    src = manifest.get("source", {}) if isinstance(manifest, dict) else {}
    path = src.get("checkpoint") if isinstance(src, dict) else None
    if path is None and isinstance(manifest, dict):
        path = manifest.get("checkpoint")
    if not isinstance(path, str):
        return None
    p = Path(path)
    if not p.is_absolute():
        p = (export_dir / p).resolve()
    return p if p.is_dir() else None


def make_torch_baseline(export_dir: Path, steps: int = 1000) -> Any:
    """A callable(batches, seq_lens, threads) -> dict for bench.run_bench, or a reason string if unavailable."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    ckpt = checkpoint_of(export_dir)
    if ckpt is None:
        return "the export's manifest names no checkpoint folder that exists"
    from rnnedge.training.checkpoint import load_checkpoint

    try:
        model = load_checkpoint(ckpt).model.eval()
    except RnnedgeError as exc:
        return f"checkpoint did not load: {exc}"

    def measure(batches: list[int], seq_lens: list[int], threads: int) -> dict[str, Any]:
        torch.set_num_threads(threads)
        out: dict[str, Any] = {"step": {}, "parallel": {}}
        vocab = model.config.vocab_size
        warm = min(100, steps)
        with torch.inference_mode():
            for b in batches:
                state = model.init_state(b)
                ids = torch.randint(0, vocab, (steps + warm, b, 1))
                for t in range(warm):
                    _, state = model(ids[t], state)
                samples = np.empty(steps, dtype=np.int64)
                for t in range(steps):
                    t0 = time.perf_counter_ns()
                    _, state = model(ids[warm + t], state)
                    samples[t] = time.perf_counter_ns() - t0
                us = samples / 1e3
                out["step"][f"batch{b}"] = {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99))}
            for t_len in seq_lens:
                ids = torch.randint(0, vocab, (1, t_len))
                model(ids)
                best = float("inf")
                for _ in range(3):
                    t0 = time.perf_counter()
                    model(ids)
                    best = min(best, time.perf_counter() - t0)
                out["parallel"][f"T{t_len}"] = {"tokens_per_s": t_len / best, "seconds": best}
        return out

    def baseline(batches: list[int], seq_lens: list[int], threads: int) -> dict[str, Any]:
        """Torch at `threads` threads and (if more) at 1 thread; the faster of the two is the baseline."""
        runs = {threads: measure(batches, seq_lens, threads)}
        if threads > 1:
            runs[1] = measure(batches, seq_lens, 1)
        best: dict[str, Any] = {"step": {}, "parallel": {}}
        for section, metric, pick in (("step", "p50", min), ("parallel", "tokens_per_s", max)):
            for key in runs[threads][section]:
                winner = pick(runs, key=lambda n, s=section, k=key: runs[n][s][k][metric])  # type: ignore[misc]
                best[section][key] = {**runs[winner][section][key], "threads": winner}
        return {"checkpoint": str(ckpt), "threads": threads, **best, "by_threads": {str(n): r for n, r in runs.items()}}

    return baseline
