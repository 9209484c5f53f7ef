"""Portability matrix of the bundled model: runtime × graph × recipe -> loads, parity with ORT, speed.

Runtimes: ONNX Runtime (the reference), OpenVINO and tract through `--provider openvino|tract` (the
`runtimes` extra; one that is not installed is recorded as such). Graphs: every graph rnnedge writes for
a device: the step and parallel graphs, the mobile step graph (fixed batch 1, int32 ids; and the
`--ids int64` one a converter such as onnx2tf takes), the qnn-htp step graph (opset 20, batch 1) and the
`--opset 20` step and parallel graphs (no Erf); the step and parallel graphs (and their opset-20 forms)
also in every recipe (`rnnedge quantize`), the device folders' graphs fp32 only (quantizing mobile/ in
place is refused: its files are in the export's ledger, not its own).
  loads   the runtime opens the graph and runs it (else the first line of its error)
  parity  max |Δlogit| and top-1 agreement vs ONNX Runtime on the same file: a --steps token stream with
          the state fed back (step graphs), or the same text in chunks of 1..max_seq_len with the state
          carried (parallel graph)
  speed   step graphs only: p50 µs per step of rnnedge's StepSession on that runtime, batch 1, 1 thread,
          every runtime and recipe timed in interleaved rounds in this one process; `ratio` is p50 over
          rnnedge's own StepSession (ONNX Runtime) on fp32 step.onnx, `ratio_same_recipe` over ORT on the
          same file

    nice -n 10 python benchmarks/runtimes.py [--data ../shared/data/tinyshakespeare.txt] [--steps 500]

Writes benchmarks/results/runtimes.json (machine, versions, every cell).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.assets import default_model_path
from rnnedge.exporter import export_model
from rnnedge.inference import open_graph
from rnnedge.io import write_json
from rnnedge.quantization import quantize_export
from rnnedge.runtime import StepSession
from rnnedge.targets import target_spec
from rnnedge.targets.isa import cpu_flags, cpu_model, x86_isa

OUT = Path(__file__).resolve().parent / "results" / "runtimes.json"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
RUNTIMES = ("cpu", "openvino", "tract")  # "cpu": ONNX Runtime, rnnedge's own StepSession
RECIPES = ("fp32", "int8-dynamic", "int8-qdq", "int4-weight", "fp16")
GRAPHS = {  # name -> (export folder, file pattern)
    "step": ("export", "step{}.onnx"),
    "parallel": ("export", "parallel{}.onnx"),
    "mobile-step": ("export", "mobile/step{}.onnx"),
    "mobile-step-ids64": ("ids64", "mobile/step{}.onnx"),
    "qnn-htp-step": ("htp", "qnn-htp/step{}.onnx"),
    "step-opset20": ("opset20", "step{}.onnx"),
    "parallel-opset20": ("opset20", "parallel{}.onnx"),
}
CHUNKS = (1, 7, 64, 256, 3, 100)  # parallel-graph calls (max_seq_len 256), the state carried


def file_of(graph: str, recipe: str) -> str:
    folder, pattern = GRAPHS[graph]
    return f"{folder}/" + pattern.format("" if recipe == "fp32" else f".{recipe}")


def logits_of(path: Path, kind: str, provider: str, ids: np.ndarray) -> np.ndarray:
    """(T, V) logits: the step graph fed ids one by one, or the parallel graph fed CHUNKS of them."""
    graph = open_graph(path, kind, provider, threads=1)
    states, out = graph.zero_states(1), []
    if kind == "step":
        for t in ids:
            logits, states = graph.run(np.array([t]), states)
            out.append(logits[0])
        return np.stack(out)
    at = 0
    for size in CHUNKS:
        logits, states = graph.run(ids[None, at : at + size], states)
        out.append(logits[0])
        at += size
    return np.concatenate(out)


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def time_steps(sessions: dict[str, StepSession], ids: np.ndarray, rounds: int) -> dict[str, float]:
    """p50 µs per step of each session: `rounds` interleaved rounds of len(ids) steps each."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for key, session in sessions.items():
            for t in ids:
                t0 = time.perf_counter()
                session.feed(int(t), copy=False)
                times[key].append(time.perf_counter() - t0)
    return {k: float(np.median(v) * 1e6) for k, v in times.items()}


def env() -> dict[str, Any]:
    versions = {}
    for package in ("onnxruntime", "onnx", "numpy", "openvino", "tract"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"machine": platform.machine(), "cpu": cpu_model(), "isa": x86_isa(cpu_flags()),
            "python": sys.version.split()[0], "load_avg_start": os.getloadavg(), **versions}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--steps", type=int, default=500, help="stream length of the step-graph parity check")
    ap.add_argument("--timed", type=int, default=200, help="steps per timing round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    text = args.data.read_text(encoding="utf-8")
    split = int(len(text) * 0.9)
    runtimes = {r: (r == "cpu" or target_spec(r).probe().ok) for r in RUNTIMES}
    settings = {k: v for k, v in vars(args).items() if k not in ("data", "out")} | {"data": args.data.name}
    result: dict[str, Any] = {"env": env(), "settings": settings, "cells": []}
    result["runtimes"] = {r: ("ONNX Runtime" if r == "cpu" else target_spec(r).probe().reason) for r in RUNTIMES}
    with tempfile.TemporaryDirectory(prefix="rnnedge-runtimes-") as tmp:
        root = Path(tmp)
        model = default_model_path()
        export_model(model, root / "export", max_seq_len=256, target="mobile")
        export_model(model, root / "ids64", max_seq_len=256, target="mobile", ids="int64")
        export_model(model, root / "htp", max_seq_len=256, target="qnn-htp")
        export_model(model, root / "opset20", max_seq_len=256, opset=20)
        (root / "calib.txt").write_text(text[split - 50_000 : split], encoding="utf-8")
        (root / "eval.txt").write_text(text[split : split + 4_000], encoding="utf-8")
        made = [(root / f, r) for f in ("export", "opset20") for r in RECIPES[1:]]
        for folder, recipe in made:
            try:
                quantize_export(folder, recipe, calib_text=root / "calib.txt", eval_text=root / "eval.txt")
                print(f"made {folder.name}/{recipe}", flush=True)
            except Exception as exc:  # recorded: that cell's graph is then absent
                result.setdefault("not_made", {})[f"{folder.name}/{recipe}"] = first_line(exc)
                print(f"cannot make {folder.name}/{recipe}: {first_line(exc)}", flush=True)
        d = root
        vocab = open_graph(d / "export" / "step.onnx").info.vocab
        ids = np.asarray(vocab.encode(text[split + 4_000 :], "skip"), dtype=np.int64)
        stream, chunked = ids[: args.steps], ids[: sum(CHUNKS)]
        speed: dict[str, StepSession] = {}
        for graph in GRAPHS:
            kind = "parallel" if graph.startswith("parallel") else "step"
            for recipe in RECIPES:
                path = d / file_of(graph, recipe)
                if not path.exists():
                    continue
                feed = stream if kind == "step" else chunked
                ref = logits_of(path, kind, "cpu", feed)
                for runtime, present in runtimes.items():
                    cell: dict[str, Any] = {"runtime": runtime, "graph": graph, "recipe": recipe}
                    result["cells"].append(cell)
                    if not present:
                        cell.update(loads=False, error="not installed")
                        continue
                    try:
                        got = logits_of(path, kind, runtime, feed)
                    except Exception as exc:
                        cell.update(loads=False, error=first_line(exc))
                        print(f"{runtime:9s} {graph:12s} {recipe:13s} fails: {cell['error']}", flush=True)
                        continue
                    cell.update(loads=True, max_abs_dlogit=float(np.abs(got - ref).max()),
                                top1=float((got.argmax(-1) == ref.argmax(-1)).mean()), tokens=len(feed))  # fmt: skip
                    if kind == "step":
                        speed[f"{runtime}|{graph}|{recipe}"] = StepSession(path, providers=runtime, threads=1)
                    print(f"{runtime:9s} {graph:12s} {recipe:13s} max|Δ| {cell['max_abs_dlogit']:.2e} "
                          f"top-1 {cell['top1']:.1%}", flush=True)  # fmt: skip
        p50 = time_steps(speed, ids[: args.timed], args.rounds)
        base = p50["cpu|step|fp32"]
        result["env"]["load_avg_end"] = os.getloadavg()
        for cell in result["cells"]:
            key = f"{cell['runtime']}|{cell['graph']}|{cell['recipe']}"
            if key in p50:
                same = p50.get(f"cpu|{cell['graph']}|{cell['recipe']}")
                cell.update(p50_us=p50[key], ratio=p50[key] / base, ratio_same_recipe=p50[key] / same if same else None)
        result["baseline"] = {"what": "rnnedge StepSession (ONNX Runtime), step.onnx fp32", "p50_us": base}
    write_json(args.out, result)
    for cell in result["cells"]:
        if "p50_us" in cell:
            print(f"{cell['runtime']:9s} {cell['graph']:12s} {cell['recipe']:13s} p50 {cell['p50_us']:7.1f} µs "
                  f"= {cell['ratio']:.2f}x rnnedge fp32")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
