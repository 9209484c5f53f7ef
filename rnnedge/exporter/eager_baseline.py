"""PyTorch eager figures for `rnnedge bench`: the checkpoint an export came from, timed in torch.

Benchmark code at the torch layer (the runtime never imports torch): `make_eager_baseline` returns a
callable for `rnnedge.runtime.bench.run_bench`, or the reason no baseline can be made, which the
bench prints instead of silently dropping the comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnedge.errors import RnnedgeError
from rnnedge.graphmeta import MANIFEST
from rnnedge.io import read_json
from rnnedge.training.checkpoint import load_checkpoint

EagerBaseline = Callable[[list[int], list[int], int], dict[str, Any]]


def _manifest_source(export_dir: Path) -> dict[str, Any]:
    manifest = read_json(export_dir / MANIFEST, "manifest")
    source = manifest.get("source") if isinstance(manifest, dict) else None
    if not isinstance(source, dict) or not isinstance(source.get("checkpoint"), str):
        raise RnnedgeError(f"{export_dir / MANIFEST} names no source checkpoint")
    return source


def checkpoint_of(export_dir: Path) -> Path:
    """The checkpoint folder an export's manifest names (source.checkpoint); RnnedgeError saying why not.

    A relative path (older exports recorded it relative to the directory `rnnedge export` ran in)
    is tried against the export folder, the export folder's parent and the current directory.
    """
    named = Path(_manifest_source(export_dir)["checkpoint"])
    if named.is_absolute():
        candidates = [named]
    else:
        folder = export_dir.resolve()
        candidates = list(dict.fromkeys([folder / named, folder.parent / named, Path.cwd() / named]))
    for path in candidates:
        if path.is_dir():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise RnnedgeError(f"the manifest's checkpoint {str(named)!r} was not found (tried {tried})")


def make_eager_baseline(export_dir: Path, steps: int = 1000, device: str = "cpu") -> EagerBaseline | str:
    """A callable(batches, seq_lens, threads) -> figures for bench.run_bench, or why there is none."""
    if device == "cuda" and not torch.cuda.is_available():
        return "torch has no CUDA device here"
    try:
        ckpt = checkpoint_of(Path(export_dir))
        loaded = load_checkpoint(ckpt)
        exported = _manifest_source(Path(export_dir)).get("config")
    except RnnedgeError as exc:
        return str(exc)
    if isinstance(exported, dict) and loaded.model.config.to_dict() != exported:
        return f"the checkpoint at {ckpt} no longer has the exported model's config"
    model = loaded.model.to(device).eval()

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def measure(batches: list[int], seq_lens: list[int], threads: int) -> dict[str, Any]:
        torch.set_num_threads(threads)
        out: dict[str, Any] = {"step": {}, "parallel": {}}
        vocab = model.config.vocab_size
        warm = min(100, steps)
        with torch.inference_mode():
            for b in batches:
                state = model.init_state(b, torch.device(device))
                ids = torch.randint(0, vocab, (steps + warm, b, 1), device=device)  # (steps, B, 1)
                for t in range(warm):
                    _, state = model(ids[t], state)
                samples = np.empty(steps, dtype=np.int64)
                for t in range(steps):
                    sync()
                    t0 = time.perf_counter_ns()
                    _, state = model(ids[warm + t], state)
                    sync()
                    samples[t] = time.perf_counter_ns() - t0
                us = samples / 1e3
                out["step"][f"batch{b}"] = {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99))}
            for t_len in seq_lens:
                ids = torch.randint(0, vocab, (1, t_len), device=device)  # (1, T)
                model(ids)
                best = float("inf")
                for _ in range(3):
                    sync()
                    start = time.perf_counter()
                    model(ids)
                    sync()
                    best = min(best, time.perf_counter() - start)
                out["parallel"][f"T{t_len}"] = {"tokens_per_s": t_len / best, "seconds": best}
        return out

    def baseline(batches: list[int], seq_lens: list[int], threads: int) -> dict[str, Any]:
        """Torch at `threads` threads and (if more) at 1 thread; the faster of the two is the baseline."""
        runs = {threads: measure(batches, seq_lens, threads)}
        if threads > 1 and device == "cpu":
            runs[1] = measure(batches, seq_lens, 1)
        best: dict[str, Any] = {"step": {}, "parallel": {}}
        for section, metric, pick in (("step", "p50", min), ("parallel", "tokens_per_s", max)):
            for key in runs[threads][section]:
                winner = pick(runs, key=lambda n, s=section, k=key: runs[n][s][k][metric])  # type: ignore[misc]
                best[section][key] = {**runs[winner][section][key], "threads": winner}
        return {
            "checkpoint": str(ckpt),
            "device": device,
            "threads": threads,
            **best,
            "by_threads": {str(n): r for n, r in runs.items()},
        }

    return baseline
