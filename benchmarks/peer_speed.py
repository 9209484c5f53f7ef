"""rnnedge's step against every peer runtime, one process, interleaved: is rnnedge the fastest?

Contenders, batch 1, one thread each, the bundled model, a held-out token stream with the state fed back:
  rnnedge       StepSession (ONNX Runtime, IOBinding) on step.onnx and each CPU recipe (int8-dynamic,
                int8-weight, int4-weight); "fastest recipe" is the lowest p50 among them
  openvino      StepSession(providers="openvino") on step.onnx and step.int8-qdq.onnx (its int8 kernels)
  tract         StepSession(providers="tract") on step.onnx
  executorch    the same module lowered to ExecuTorch + XNNPACK, fp32 and its 8-bit dynamic flow
                (benchmarks/executorch_peer.py)
  litert        not run here (TensorFlow's stack); its ratio is read from benchmarks/results/litert.json
                when that file exists, else recorded as not measured
Every contender is timed in `--rounds` interleaved rounds of `--timed` steps; p50 µs per step, ratios over
rnnedge fp32. Each contender's logits over `--steps` tokens are compared with rnnedge fp32's (max |Δlogit|,
top-1, ΔNLL) so a fast-but-wrong peer shows. The run waits (up to --wait s) for the 1-minute load to drop
below --max-load and records the load before and after. Also: ORT's per-op profile of rnnedge's fp32 and
int8-weight step (benchmarks/step_profile.profile; shares, the profiler inflates absolute times) and two ORT
session options on fp32 (denormals as zero, no spinning) timed beside the rest.

Needs the `runtimes` and `executorch` extras (benchmarks/executorch_env.sh makes such a venv):

    nice -n 10 python benchmarks/peer_speed.py [--data ../shared/data/tinyshakespeare.txt]

Writes benchmarks/results/peer_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import executorch_peer as etp  # noqa: E402
from step_profile import profile  # noqa: E402  (ORT's per-op profiler, 1 thread)

from rnnedge.assets import default_model_path  # noqa: E402
from rnnedge.exporter import export_model  # noqa: E402
from rnnedge.io import write_json  # noqa: E402
from rnnedge.quantization import quantize_export  # noqa: E402
from rnnedge.runtime import StepSession  # noqa: E402
from rnnedge.targets import target_spec  # noqa: E402
from rnnedge.training.checkpoint import load_checkpoint  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "peer_speed.json"
LITERT = ROOT / "benchmarks" / "results" / "litert.json"
RECIPES = ("int8-dynamic", "int8-weight", "int4-weight", "int8-qdq")  # int8-qdq for OpenVINO only
RNNEDGE = ("fp32", "int8-dynamic", "int8-weight", "int4-weight")
PEERS = {"openvino": ("fp32", "int8-qdq"), "tract": ("fp32",)}
OPTIONS = {"fp32 denormal-as-zero": {"session.set_denormal_as_zero": "1"},
           "fp32 no-spinning": {"session.intra_op.allow_spinning": "0"}}  # fmt: skip


def file_of(recipe: str) -> str:
    return "step.onnx" if recipe == "fp32" else f"step.{recipe}.onnx"


def onnx_steps(export: Path) -> dict[str, tuple[etp.Step, Any]]:
    """{"runtime|recipe": (step, reset)} for rnnedge's own recipes and the ONNX-reading peers."""
    steps: dict[str, tuple[etp.Step, Any]] = {}
    for recipe in RNNEDGE:
        session = StepSession(export / file_of(recipe), threads=1)
        steps[f"rnnedge|{recipe}"] = (lambda t, s=session: s.feed(t, copy=False)[0]), session.reset
    for label, config in OPTIONS.items():  # ORT session options on fp32: measured, not used by the verdict
        session = StepSession(export / "step.onnx", threads=1, session_config=config)
        steps[f"rnnedge-option|{label}"] = (lambda t, s=session: s.feed(t, copy=False)[0]), session.reset
    for runtime, recipes in PEERS.items():
        if not target_spec(runtime).probe().ok:
            print(f"{runtime}: {target_spec(runtime).probe().reason}", flush=True)
            continue
        for recipe in recipes:
            session = StepSession(export / file_of(recipe), providers=runtime, threads=1)
            steps[f"{runtime}|{recipe}"] = (lambda t, s=session: s.feed(t, copy=False)[0]), session.reset
    return steps


def wait_for_quiet(max_load: float, wait_s: float) -> list[float]:
    """Sleep until the 1-minute load is below max_load (at most wait_s); the load when it returns."""
    deadline = time.time() + wait_s
    while os.getloadavg()[0] > max_load and time.time() < deadline:
        time.sleep(15)
    return [round(x, 2) for x in os.getloadavg()]


def litert_cell() -> dict[str, Any]:
    """LiteRT's fp32 ratio over rnnedge fp32 from its own benchmark's JSON, when that exists."""
    if not LITERT.is_file():
        return {"measured": False, "why": f"{LITERT.relative_to(ROOT)} not present (LiteRT runs in TensorFlow's stack)"}
    data = json.loads(LITERT.read_text(encoding="utf-8"))
    return {"measured": True, "source": str(LITERT.relative_to(ROOT)), "speed": data.get("speed", data.get("cells"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=etp.DEFAULT_DATA)
    ap.add_argument("--steps", type=int, default=2000, help="held-out stream length (agreement check)")
    ap.add_argument("--timed", type=int, default=300, help="steps per timing round")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--max-load", type=float, default=2.5)
    ap.add_argument("--wait", type=float, default=600, help="seconds to wait for the load to drop")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    text = args.data.read_text(encoding="utf-8")
    loaded = load_checkpoint(default_model_path())
    lm = loaded.model.eval()
    calib, stream = etp.held_out(text, loaded.vocab, args.steps)
    split = int(len(text) * 0.9)
    env = etp.machine() | etp.versions("onnxruntime", "openvino", "tract", "executorch", "torch")
    settings = {k: v for k, v in vars(args).items() if k not in ("data", "out")}
    result: dict[str, Any] = {"env": env, "settings": settings | {"data": args.data.name, "threads": 1, "batch": 1}}
    with tempfile.TemporaryDirectory(prefix="rnnedge-peer-speed-") as tmp:
        export = Path(tmp) / "export"
        export_model(default_model_path(), export, max_seq_len=256)
        (Path(tmp) / "calib.txt").write_text(text[split - 50_000 : split], encoding="utf-8")
        (Path(tmp) / "eval.txt").write_text(text[split : split + 4_000], encoding="utf-8")
        for recipe in RECIPES:
            quantize_export(export, recipe, calib_text=Path(tmp) / "calib.txt", eval_text=Path(tmp) / "eval.txt")
        steps = onnx_steps(export)
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(1)
        for recipe, quant in (("fp32", False), ("int8-dynamic", True)):
            pte, _ = etp.lower(lm, quant, calib)
            steps[f"executorch|{recipe}"] = etp.executorch_step(pte, lm)
        ref_step, _ = steps["rnnedge|fp32"]
        ref = etp.stream_logits(ref_step, stream)
        agreement = {}
        for key, (step, reset) in steps.items():
            reset()
            agreement[key] = etp.parity(etp.stream_logits(step, stream), ref, stream)
            reset()
        result["ort_profile"] = {r: profile(export / file_of(r), 200) for r in ("fp32", "int8-weight")}
        result["load_avg_before_timing"] = wait_for_quiet(args.max_load, args.wait)
        p50 = etp.p50_interleaved({k: s for k, (s, _) in steps.items()}, stream[: args.timed], args.rounds)
        result["load_avg_after_timing"] = [round(x, 2) for x in os.getloadavg()]
    base = p50["rnnedge|fp32"]
    result["cells"] = [{"runtime": k.split("|")[0], "recipe": k.split("|")[1], "p50_us": v, "ratio": v / base,
                        "vs_rnnedge_fp32": agreement[k]} for k, v in p50.items()]  # fmt: skip
    result["litert"] = litert_cell()
    result["verdict"] = verdict(result["cells"])
    write_json(args.out, result)
    for c in sorted(result["cells"], key=lambda c: c["p50_us"]):
        a = c["vs_rnnedge_fp32"]
        print(f"{c['runtime']:10s} {c['recipe']:13s} p50 {c['p50_us']:6.1f} µs {c['ratio']:.2f}x  "
              f"max|Δ| {a['max_abs_dlogit']:.2g} ΔNLL {a['delta_nll']:+.4f}")  # fmt: skip
    print(json.dumps(result["verdict"], indent=1))
    print(f"load {result['load_avg_before_timing']} -> {result['load_avg_after_timing']}; wrote {args.out}")


def verdict(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """rnnedge's fastest recipe over the fastest peer (the goal: <= 0.9), and fp32 over each peer's fp32."""
    ours = min((c for c in cells if c["runtime"] == "rnnedge"), key=lambda c: c["p50_us"])
    peers = [c for c in cells if not c["runtime"].startswith("rnnedge")]
    fastest = min(peers, key=lambda c: c["p50_us"])
    fp32 = next(c for c in cells if c["runtime"] == "rnnedge" and c["recipe"] == "fp32")
    return {
        "rnnedge_fastest": f"{ours['recipe']} ({ours['p50_us']:.1f} µs)",
        "fastest_peer": f"{fastest['runtime']} {fastest['recipe']} ({fastest['p50_us']:.1f} µs)",
        "fastest_over_fastest_peer": ours["p50_us"] / fastest["p50_us"],
        "fp32_over_peer_fp32": {c["runtime"]: fp32["p50_us"] / c["p50_us"] for c in peers if c["recipe"] == "fp32"},
    }


if __name__ == "__main__":
    main()
