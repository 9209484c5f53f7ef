"""LiteRT beside rnnedge: the bundled model exported with `--target litert`, its full-integer int8 variant,
parity, size and speed, one process, 1 thread, batch 1.

  parity  max |Δlogit| and top-1 agreement over a --steps stream of held-out text with each runtime's state
          fed back: litert/step.tflite in LiteRT vs ONNX Runtime on litert/step.onnx (the graph it was
          converted from), and vs rnnedge's step.onnx
  int8    litert-int8 (TFLite converter full-integer, calibrated on 1,000 real steps incl. the state):
          its op list (integer kernels) and drift vs LiteRT fp32 on 2,000 held-out chars (ΔNLL, max |Δlogit|)
  size    bytes of step.onnx, step.tflite, step.litert-int8.tflite
  speed   p50 µs per step of rnnedge's StepSession on each (LiteRT through `--provider litert`), every
          session timed in interleaved rounds; `ratio` = p50 / rnnedge StepSession (ORT) on step.onnx fp32
  load    the load average before and after, the export's and conversion's seconds, each session's open time

    RNNEDGE_LITERT_PYTHON=/path/to/venv/bin/python nice -n 10 python benchmarks/litert.py [--data FILE]

Writes benchmarks/results/litert.json.
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
from rnnedge.exporter.litert_int8 import VARIANT, quantize_litert
from rnnedge.inference import open_graph
from rnnedge.io import write_json
from rnnedge.runtime import StepSession
from rnnedge.targets import litert as rt
from rnnedge.targets.isa import cpu_flags, cpu_model, x86_isa

OUT = Path(__file__).resolve().parent / "results" / "litert.json"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def stream_logits(path: Path, provider: str, ids: np.ndarray) -> np.ndarray:
    """(T, V) logits of a step graph fed ids one by one, its own state fed back."""
    graph = open_graph(path, "step", provider, threads=1)
    states, out = graph.zero_states(1), []
    for t in ids:
        logits, states = graph.run(np.array([t]), states)
        out.append(logits[0])
    return np.stack(out)


def parity(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    return {"max_abs_dlogit": float(np.abs(got - ref).max()), "top1": float((got.argmax(-1) == ref.argmax(-1)).mean())}


def time_steps(sessions: dict[str, StepSession], ids: np.ndarray, rounds: int) -> dict[str, float]:
    """p50 µs per step of each session over `rounds` interleaved rounds of len(ids) steps."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for key, session in sessions.items():
            for t in ids:
                t0 = time.perf_counter()
                session.feed(int(t), copy=False)
                times[key].append(time.perf_counter() - t0)
    return {k: float(np.median(v) * 1e6) for k, v in times.items()}


def env() -> dict[str, Any]:
    versions: dict[str, Any] = {}
    for package in ("onnxruntime", "onnx", "numpy", "ai-edge-litert"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"machine": platform.machine(), "cpu": cpu_model(), "isa": x86_isa(cpu_flags()),
            "python": sys.version.split()[0], "converter_python": rt.converter_python(), **versions}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--steps", type=int, default=2000, help="stream length of the parity check")
    ap.add_argument("--timed", type=int, default=300, help="steps per timing round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    why = rt._probe()
    if not why.ok or rt.converter_python() is None:
        raise SystemExit(f"litert benchmark cannot run: {why.reason if not why.ok else rt.CONVERTER_HINT}")
    text = args.data.read_text(encoding="utf-8")
    split = int(len(text) * 0.9)
    result: dict[str, Any] = {"env": env(), "load_average_before": os.getloadavg()}
    result["settings"] = {k: v for k, v in vars(args).items() if k not in ("data", "out")} | {"data": args.data.name}
    with tempfile.TemporaryDirectory(prefix="rnnedge-litert-bench-") as tmp:
        d = Path(tmp) / "export"
        t0 = time.perf_counter()
        manifest = export_model(default_model_path(), d, max_seq_len=256, target="litert").manifest
        result["export_seconds"] = round(time.perf_counter() - t0, 1)
        result["export_litert_seconds"] = round(manifest["timings_seconds"].get("litert", 0.0), 1)
        result["verification"] = manifest["litert"]["verification"]
        t0 = time.perf_counter()
        car = quantize_litert(d, text[split - 1000 :], calib_chars=1000, held_out_chars=2000)
        result["int8"] = {"seconds": round(time.perf_counter() - t0, 1), "ops": car["ops"], "drift": car["drift"]}
        lit = d / "litert"
        names = {"rnnedge step.onnx": "../step.onnx", "litert/step.onnx": "step.onnx", "step.tflite": "step.tflite"}
        files = {k: lit / v for k, v in names.items()} | {f"{VARIANT} tflite": lit / f"step.{VARIANT}.tflite"}
        result["size_bytes"] = {k: p.stat().st_size for k, p in files.items()}
        vocab = open_graph(d / "step.onnx").info.vocab
        ids = np.asarray(vocab.encode(text[split + 2000 :], "skip"), dtype=np.int64)[: args.steps]
        ref_rnnedge = stream_logits(d / "step.onnx", "cpu", ids)
        ref_same = stream_logits(lit / "step.onnx", "cpu", ids)
        fp32 = stream_logits(lit / "step.onnx", "litert", ids)
        int8 = stream_logits(lit / f"step.{VARIANT}.onnx", "litert", ids)
        result["parity"] = {
            "litert_fp32_vs_ort_same_graph": parity(fp32, ref_same),
            "litert_fp32_vs_rnnedge_step": parity(fp32, ref_rnnedge),
            "litert_int8_vs_litert_fp32": parity(int8, fp32),
            "litert_int8_vs_rnnedge_step": parity(int8, ref_rnnedge),
            "tokens": len(ids),
        }
        plan = {"rnnedge fp32 (ORT, step.onnx)": (d / "step.onnx", "cpu"),
                "ORT on litert/step.onnx": (lit / "step.onnx", "cpu"),
                "LiteRT fp32": (lit / "step.onnx", "litert"),
                "LiteRT int8 (full-integer)": (lit / f"step.{VARIANT}.onnx", "litert")}  # fmt: skip
        sessions, opened = {}, {}
        for key, (path, provider) in plan.items():
            t0 = time.perf_counter()
            sessions[key] = StepSession(path, providers=provider, threads=1)
            opened[key] = round((time.perf_counter() - t0) * 1e3, 1)
        p50 = time_steps(sessions, ids[: args.timed], args.rounds)
        base = p50["rnnedge fp32 (ORT, step.onnx)"]
        result["speed"] = {k: {"p50_us": round(v, 1), "ratio": round(v / base, 3), "open_ms": opened[k]}
                           for k, v in p50.items()}  # fmt: skip
        result["baseline"] = {"what": "rnnedge StepSession (ONNX Runtime), step.onnx fp32, 1 thread", "p50_us": base}
    result["load_average_after"] = os.getloadavg()
    write_json(args.out, result)
    for k, v in result["speed"].items():
        print(f"{k:30s} p50 {v['p50_us']:7.1f} µs = {v['ratio']:.2f}x rnnedge fp32")
    print({k: round(v["max_abs_dlogit"], 7) for k, v in result["parity"].items() if isinstance(v, dict)})
    print("int8 drift", result["int8"]["drift"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
