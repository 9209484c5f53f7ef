"""Everything `rnnedge compare` measures on one export folder, fp32 and the variant alike.

- loss: nats/char on the held-out text, parallel graph chunked (`rnnedge eval`'s evaluate_export; a
  variant without a parallel graph is scored through its step graph);
- state: bytes per stream vs t from the state contract (memory.py);
- resident: peak resident memory of a streaming session, in a fresh process (resident.py);
- step latency p50/p99 at each position t (latency.py); parallel tokens/s at each length (`rnnedge
  bench`'s parallel_throughput, batch 1, chunked at the graph's max_seq_len);
- drift: the variant against fp32 per timestep (rnnedge.drift.run_drift), summarised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.compare.latency import step_latency_at
from rnnedge.compare.memory import state_memory
from rnnedge.compare.resident import resident_memory
from rnnedge.compare.settings import PAPER_NATS, STATE_T, CompareSettings
from rnnedge.compare.sources import Source
from rnnedge.drift import DriftResult, run_drift, summarize, verdict
from rnnedge.graphmeta import FP32, graph_file
from rnnedge.inference import open_graph
from rnnedge.runtime import evaluate_export
from rnnedge.runtime.bench import parallel_throughput

Log = Callable[[str], None]
DRIFT_KEYS = ("steps", "streams", "state_error", "loss", "kl_mean", "top1_agreement", "max_abs_logit_mean")
THROUGHPUT_REPS = 3


@dataclass(frozen=True, eq=False)
class Measured:
    """One model's compare.json entry and its drift result (the drift plot draws it)."""

    entry: dict[str, Any]
    drift: DriftResult


def _loss(folder: Path, text: str, variant: str, settings: CompareSettings) -> dict[str, Any]:
    r = evaluate_export(folder, text, variant=variant, on_unknown=settings.on_unknown, threads=settings.threads)
    return {
        "nats_per_char": r.get("nats_per_char", r["loss_nats"]),
        "bits_per_char": r["bits_per_char"],
        "chars": r["chars"],
        "graph": r["graph"],
    }


def _throughput(folder: Path, variant: str, lengths: Sequence[int], threads: int) -> dict[str, Any] | None:
    path = folder / graph_file("parallel", variant)
    if not path.is_file():
        return None
    return {str(t): parallel_throughput(path, t, threads, reps=THROUGHPUT_REPS) for t in lengths}


def _drift(result: DriftResult) -> dict[str, Any]:
    summary = summarize(result)
    out = {k: summary[k] for k in DRIFT_KEYS}
    out["verdict"] = verdict(summary)
    out["diverged_at"] = summary["free_running"]["diverged_at"]
    out["exact_states"] = [s["name"] for s in summary["exact_states"]]
    curves = summary["curves"]
    worst = summary["state_error"]["worst_state"]
    out["curves"] = {"t": curves["t"], "worst_state_error": curves["state_error"][worst]["mean"]}
    out["curves"]["kl"] = curves["kl"]["mean"]
    return out


def measure_export(
    source: Source,
    folder: Path,
    held_out: str,
    ids: np.ndarray,
    settings: CompareSettings,
    costs: dict[str, Any],
    log: Log,
) -> Measured:
    """Measure the export `folder` of `source` on the held-out text (`ids`: it encoded) for fp32 and
    `settings.variant`; `costs` are its parameter and MAC counts (rnnedge.models.costs)."""
    variant = settings.variant
    precisions = (FP32, variant)
    steps = {v: folder / graph_file("step", v) for v in precisions}
    info = open_graph(steps[FP32], kind="step", threads=settings.threads).info
    log(f"  loss on {len(held_out):,} held-out characters")
    loss = {v: _loss(folder, held_out, v, settings) for v in precisions}
    log(f"  peak resident memory of a {settings.stream_tokens}-token stream (fresh process)")
    resident = {v: resident_memory(steps[v], settings.stream_tokens, settings.threads) for v in precisions}
    log(f"  step latency at t = {', '.join(map(str, settings.positions))}")
    latency = {
        v: step_latency_at(steps[v], settings.positions, settings.latency_samples, settings.threads, ids)
        for v in precisions
    }
    log(f"  parallel tokens/s at T = {', '.join(map(str, settings.lengths))}")
    throughput = {v: _throughput(folder, v, settings.lengths, settings.threads) for v in precisions}
    log(f"  drift {variant} vs fp32: {settings.drift_steps} steps x {settings.drift_streams} streams")
    drift = run_drift(
        folder,
        held_out,
        variant=variant,
        steps=settings.drift_steps,
        streams=settings.drift_streams,
        on_unknown=settings.on_unknown,  # type: ignore[arg-type]
        gen_steps=settings.drift_gen_steps,
        threads=settings.threads,
        name=source.name,
    )
    notes = []
    if throughput[variant] is None:
        notes.append(f"no {graph_file('parallel', variant)}: its loss is scored through the step graph")
    entry = {
        "name": source.name,
        "arch": info.arch,
        "source": {"path": str(source.path), "kind": source.kind},
        "config": dict(info.config),
        "training": source.training,
        "costs": costs,
        "loss": {**loss, "delta_nats_per_char": loss[variant]["nats_per_char"] - loss[FP32]["nats_per_char"]},
        "paper_nats_per_char": PAPER_NATS.get(info.arch),
        "state": {
            "states": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype, "kind": s.kind} for s in info.states],
            **state_memory(info.states, STATE_T),
        },
        "resident": resident,
        "step_latency_us": latency,
        "parallel_throughput": throughput,
        "drift": _drift(drift),
        "notes": notes + list(drift.notes),
    }
    return Measured(entry, drift)
