"""int8 on every CPU: the same variant files run on x86 (this CPU), x86 AVX2-only and ARM64 (emulated).

The bundled minGRU is exported once; each recipe below makes its step variant (rnnedge.quantization,
calibrated on the text before the held-out part where the recipe calibrates). Every variant file then
runs on each CPU target that runs here (`rnnedge targets`): `--streams` streams (one batch) at
consecutive offsets of the held-out text, each `--tokens` characters teacher-forced from zero state,
1 thread. Against the fp32 step graph on this CPU: mean NLL delta
(nats/char) and max |logit delta|; per recipe, the spread of max |logit delta| across CPUs (goal: within 2x).

    python benchmarks/int8_cpus.py [--data ../shared/data/tinyshakespeare.txt] [--tokens 1000]

Writes benchmarks/results/int8_cpus.json (machine, CPU flags, versions, every cell).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.assets import default_model_path
from rnnedge.exporter import export_model
from rnnedge.graphmeta import graph_file
from rnnedge.inference import log_softmax, open_graph
from rnnedge.quantization import PRESETS, quantize_export
from rnnedge.targets import all_targets, where
from rnnedge.targets.isa import cpu_flags, cpu_model, x86_isa
from rnnedge.targets.qemu import qemu_binary

OUT = Path(__file__).resolve().parent / "results" / "int8_cpus.json"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
GOALS = {"loss_delta": 0.005, "logit_spread_across_cpus": 2.0}
RECIPES = {  # variant name -> the recipe (presets as shipped, and rnnedge 0.1's settings as the control)
    "int8-dynamic": PRESETS["int8-dynamic"],
    "int8-dynamic-v01": dataclasses.replace(  # rnnedge 0.1: signed 8-bit per-tensor weights
        PRESETS["int8-dynamic"], name="int8-dynamic-v01", weight_type="int8", per_channel=False
    ),
    "int8-qdq": PRESETS["int8-qdq"],
    "int8-qdq-full-range": dataclasses.replace(PRESETS["int8-qdq"], name="int8-qdq-full-range", reduce_range=False),
    "int8-qdq-v01": dataclasses.replace(  # rnnedge 0.1: 8-bit per-tensor weights, embedding quantized
        PRESETS["int8-qdq"], name="int8-qdq-v01", reduce_range=False, per_channel=False, quantize_embedding=True
    ),
}


def run_streams(path: Path, provider: str, ids: np.ndarray) -> np.ndarray:
    """(T-1, B, V) logits of B streams fed ids[:-1] (ids: (T, B)) from zero state on `provider`."""
    graph = open_graph(path, "step", provider, threads=1)
    states, out = graph.zero_states(ids.shape[1]), []
    for t in range(ids.shape[0] - 1):
        logits, states = graph.run(ids[t], states)  # (B, V)
        out.append(logits)
    getattr(graph.session, "close", lambda: None)()
    return np.stack(out)  # (T-1, B, V)


def nll(logits: np.ndarray, ids: np.ndarray) -> float:
    lp = log_softmax(logits.astype(np.float64))  # (T-1, B, V)
    nxt = ids[1:]  # (T-1, B)
    return float(-np.take_along_axis(lp, nxt[..., None], axis=-1).mean())


def env() -> dict[str, Any]:
    qemu = qemu_binary("aarch64") or qemu_binary("x86_64")
    qemu_version = None
    if qemu:
        qemu_version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    versions = {p: importlib.metadata.version(p) for p in ("onnxruntime", "onnx", "numpy", "torch")}
    return {
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "int8_flags": x86_isa(cpu_flags()),
        "python": sys.version.split()[0],
        "qemu": qemu_version,
        **versions,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--tokens", type=int, default=1000, help="characters per stream")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    text = args.data.read_text(encoding="utf-8")
    split = int(len(text) * 0.9)
    n = args.tokens * args.streams
    held = text[split + 20_000 : split + 20_000 + n]  # past the 20k chars quantize's check reads
    targets = [t.name for t in all_targets() if t.runs != "static" and t.name.startswith("cpu") and t.probe().ok]
    print(f"targets here: {', '.join(targets)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="rnnedge-int8cpus-") as tmp:
        root = Path(tmp)
        export_model(default_model_path(), root / "export", max_seq_len=4096)
        (root / "calib.txt").write_text(text[split - 200_000 : split], encoding="utf-8")
        (root / "eval.txt").write_text(text[split : split + 20_000], encoding="utf-8")
        d = root / "export"
        for name, rec in RECIPES.items():
            calib = root / "calib.txt" if rec.needs_calibration else None
            step_only = dataclasses.replace(rec, graphs=("step",))
            quantize_export(d, step_only, calib_text=calib, eval_text=root / "eval.txt")
            print(f"  made step.{name}.onnx", flush=True)
        vocab = open_graph(d / "step.onnx").info.vocab
        flat = np.asarray(vocab.encode(held, "skip"), dtype=np.int64)  # (N,)
        per = flat.size // args.streams
        ids = np.ascontiguousarray(flat[: per * args.streams].reshape(args.streams, per).T)  # (T, B)
        ref = run_streams(d / "step.onnx", "cpu", ids)
        ref_nll = nll(ref, ids)
        cells: dict[str, dict[str, Any]] = {}
        for variant in ["fp32", *RECIPES]:
            path = d / graph_file("step", variant)
            cells[variant] = {}
            for target in targets:
                logits = run_streams(path, target, ids)
                cells[variant][target] = {
                    "nll_delta": round(nll(logits, ids) - ref_nll, 6),
                    "max_abs_logit": float(f"{np.abs(logits - ref).max():.4g}"),
                    "top1_agreement": round(float((logits.argmax(-1) == ref.argmax(-1)).mean()), 4),
                }
                print(f"  {variant:<16} {target:<13} {cells[variant][target]}", flush=True)
    summary = {}
    for variant in RECIPES:
        errs = [c["max_abs_logit"] for c in cells[variant].values()]
        deltas = [c["nll_delta"] for c in cells[variant].values()]
        summary[variant] = {
            "worst_nll_delta": max(deltas),
            "logit_spread_across_cpus": round(max(errs) / min(errs), 3),
            "meets_loss_goal": max(deltas) <= GOALS["loss_delta"],
            "meets_spread_goal": max(errs) / min(errs) <= GOALS["logit_spread_across_cpus"],
        }
    result = {
        "what": "bundled minGRU step graph, streams in one batch from zero state, teacher-forced, 1 thread",
        "streams": args.streams,
        "data": args.data.name,
        "tokens": int(ids.size),  # all streams
        "fp32_nll_host": round(ref_nll, 6),
        "goals": GOALS,
        "recipes": {n: r.to_dict() for n, r in RECIPES.items()},
        "targets": {t: where(t) for t in targets},
        "cells": cells,
        "summary": summary,
        "env": env(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
