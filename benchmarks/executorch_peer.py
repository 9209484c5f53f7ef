"""ExecuTorch + XNNPACK as a peer of rnnedge's step: the bundled model lowered both ways, parity and speed.

The bundled default model's one-token step (rnnedge.exporter.trace.StepGraph, the module the exporter
traces into step.onnx: (input_ids (1,), *states) -> (logits (1, V), *states)) is lowered to ExecuTorch
with the XNNPACK partitioner twice:
  fp32          torch.export -> to_edge_transform_and_lower(XnnpackPartitioner) -> .pte
  int8-dynamic  XNNPACK's documented 8-bit dynamic flow: XNNPACKQuantizer with
                get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True), prepare_pt2e /
                convert_pt2e (torchao), then the same lowering (dynamically quantized int8 activations,
                per-channel int8 weights)
Parity: a --steps held-out token stream with the state fed back, each runtime against fp32 PyTorch eager
on the same module: max |Δlogit|, top-1 agreement and ΔNLL (mean next-char NLL minus PyTorch's). rnnedge's
StepSession (ONNX Runtime) on the export's step.onnx and step.int8-dynamic.onnx is measured the same way.
Speed: p50 µs per step, batch 1, one thread everywhere (ExecuTorch's XNNPACK threadpool reset to 1, ORT
intra-op 1), all four timed in interleaved rounds in this one process; ratios to rnnedge fp32 and, for
int8, to rnnedge's int8-dynamic. ExecuTorch is timed as a Python user calls it: `executorch.runtime`'s
`method.execute((ids, *state))`, the returned state fed back.

Needs the `executorch` extra beside the base install (torch 2.13 CPU; benchmarks/executorch_env.sh
makes such a venv):

    nice -n 10 python benchmarks/executorch_peer.py [--data ../shared/data/tinyshakespeare.txt] [--steps 2000]

Writes benchmarks/results/executorch_peer.json (machine, flags, versions, load, every figure).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnedge.assets import default_model_path  # noqa: E402
from rnnedge.exporter import export_model  # noqa: E402
from rnnedge.exporter.trace import StepGraph  # noqa: E402
from rnnedge.inference.nll import nll  # noqa: E402
from rnnedge.io import write_json  # noqa: E402
from rnnedge.models import CharLM  # noqa: E402
from rnnedge.quantization import quantize_export  # noqa: E402
from rnnedge.runtime import StepSession  # noqa: E402
from rnnedge.targets.isa import cpu_flags, cpu_model, x86_isa  # noqa: E402
from rnnedge.training.checkpoint import load_checkpoint  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "executorch_peer.json"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
Step = Callable[[int], np.ndarray]  # one token id -> (V,) logits, the state carried inside


def example_inputs(lm: CharLM) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(1, dtype=torch.long), *lm.init_state(1))  # ids (1,), states (1, ...)


def lower(lm: CharLM, quantize: bool, calib_ids: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """(.pte bytes, {delegated/total ops}) of the step lowered to ExecuTorch + XNNPACK."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    module, args = StepGraph(lm).eval(), example_inputs(lm)
    with torch.no_grad():
        if quantize:
            module = quantized(module, args, calib_ids)
        exported = torch.export.export(module, args)
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        nodes = [n for n in edge.exported_program().graph.nodes if n.op == "call_function"]
        outside = sorted({str(n.target) for n in nodes if "executorch_call_delegate" not in str(n.target)})
        outside = [t for t in outside if "getitem" not in t]
        program = edge.to_executorch()
    info = {"delegate_calls": sum("executorch_call_delegate" in str(n.target) for n in nodes),
            "ops_outside_xnnpack": outside, "pte_bytes": len(program.buffer)}  # fmt: skip
    return program.buffer, info


def quantized(module: torch.nn.Module, args: tuple[torch.Tensor, ...], calib_ids: np.ndarray) -> torch.nn.Module:
    """XNNPACK's 8-bit dynamic flow (per-channel symmetric int8 weights, int8 activations at run time)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    prepared = prepare_pt2e(torch.export.export(module, args).module(), quantizer)
    state = args[1:]
    for t in calib_ids:  # dynamic activations need no calibration; this runs the observers once per token
        out = prepared(torch.tensor([int(t)]), *state)
        state = tuple(out[1:])
    return convert_pt2e(prepared)


def executorch_step(pte: bytes, lm: CharLM) -> tuple[Step, Callable[[], None]]:
    """(step, reset) over an ExecuTorch program's forward method (executorch.runtime), the state fed back."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(pte)  # must outlive its method (it owns the buffer)
    method = program.load_method("forward")
    zero = tuple(lm.init_state(1))
    state = list(zero)

    def step(token: int) -> np.ndarray:
        out = method.execute((torch.tensor([token]), *state))
        state[:] = out[1:]
        return out[0][0].numpy()

    def reset() -> None:
        state[:] = zero

    step.program = program  # type: ignore[attr-defined]  # keep the program alive with the step
    return step, reset


def eager_step(lm: CharLM) -> tuple[Step, Callable[[], None]]:
    module, zero = StepGraph(lm).eval(), tuple(lm.init_state(1))
    state = list(zero)

    def step(token: int) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.tensor([token]), *state)
        state[:] = out[1:]
        return out[0][0].numpy()

    def reset() -> None:
        state[:] = zero

    return step, reset


def ort_step(path: Path) -> tuple[Step, Callable[[], None]]:
    session = StepSession(path, threads=1)
    return (lambda token: session.feed(token, copy=False)[0]), session.reset


def stream_logits(step: Step, ids: np.ndarray) -> np.ndarray:
    return np.stack([np.array(step(int(t)), dtype=np.float32) for t in ids])  # (T, V)


def parity(got: np.ndarray, ref: np.ndarray, ids: np.ndarray) -> dict[str, float]:
    """got/ref (T, V) logits of tokens ids[:T]; NLL of ids[1:] from logits[:-1]."""
    nll_got, nll_ref = nll(got[:-1], ids[1:]).mean(), nll(ref[:-1], ids[1:]).mean()
    return {"max_abs_dlogit": float(np.abs(got - ref).max()), "top1": float((got.argmax(-1) == ref.argmax(-1)).mean()),
            "nll": float(nll_got), "delta_nll": float(nll_got - nll_ref)}  # fmt: skip


def p50_interleaved(steps: dict[str, Step], ids: np.ndarray, rounds: int) -> dict[str, float]:
    """p50 µs of one step of each contender over `rounds` interleaved rounds of len(ids) steps."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            for t in ids.tolist():
                t0 = time.perf_counter()
                step(t)
                times[key].append(time.perf_counter() - t0)
    return {k: float(np.median(v) * 1e6) for k, v in times.items()}


def versions(*packages: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def machine() -> dict[str, Any]:
    """The JSON header of the peer benchmarks: machine, CPU, ISA flags, Python, load now."""
    return {"machine": platform.machine(), "cpu": cpu_model(), "isa": x86_isa(cpu_flags()), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "load_avg_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def held_out(text: str, vocab: Any, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration ids before the 90% split, the held-out stream after split + 4,000 chars)."""
    split = int(len(text) * 0.9)
    calib = np.asarray(vocab.encode(text[split - 2_000 : split], "skip"), dtype=np.int64)
    stream = np.asarray(vocab.encode(text[split + 4_000 :], "skip"), dtype=np.int64)[:steps]
    return calib[:256], stream


def build_contenders(lm: CharLM, text: str, tmp: Path, calib: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """({name: (step, reset)}, {name: lowering info}): ET fp32/int8 and rnnedge's ORT fp32/int8-dynamic."""
    split = int(len(text) * 0.9)
    export = tmp / "export"
    export_model(default_model_path(), export, max_seq_len=256)
    (tmp / "calib.txt").write_text(text[split - 50_000 : split], encoding="utf-8")
    (tmp / "eval.txt").write_text(text[split : split + 4_000], encoding="utf-8")
    quantize_export(export, "int8-dynamic", calib_text=tmp / "calib.txt", eval_text=tmp / "eval.txt")
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(1)  # one XNNPACK thread, as ORT's intra-op 1
    contenders, lowering = {}, {}
    for name, quant in (("executorch-fp32", False), ("executorch-int8-dynamic", True)):
        pte, lowering[name] = lower(lm, quant, calib)
        contenders[name] = executorch_step(pte, lm)
        print(f"lowered {name}: {lowering[name]}", flush=True)
    contenders["rnnedge-fp32"] = ort_step(export / "step.onnx")
    contenders["rnnedge-int8-dynamic"] = ort_step(export / "step.int8-dynamic.onnx")
    return contenders, lowering


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--steps", type=int, default=2000, help="held-out stream length (parity)")
    ap.add_argument("--timed", type=int, default=300, help="steps per timing round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    text = args.data.read_text(encoding="utf-8")
    loaded = load_checkpoint(default_model_path())
    lm = loaded.model.eval()
    calib, stream = held_out(text, loaded.vocab, args.steps)
    result: dict[str, Any] = {"env": machine() | versions("torch", "executorch", "torchao", "onnxruntime", "numpy"),
                              "settings": {k: v for k, v in vars(args).items() if k not in ("data", "out")}
                              | {"data": args.data.name, "threads": 1, "batch": 1}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rnnedge-executorch-") as tmp:
        contenders, result["lowering"] = build_contenders(lm, text, Path(tmp), calib)
        ref_step, _ = eager_step(lm)
        ref = stream_logits(ref_step, stream)
        result["parity_vs_pytorch_fp32"] = {}
        for name, (step, reset) in contenders.items():
            reset()
            result["parity_vs_pytorch_fp32"][name] = cell = parity(stream_logits(step, stream), ref, stream)
            print(f"{name:24s} max|Δ| {cell['max_abs_dlogit']:.3g} top-1 {cell['top1']:.2%} "
                  f"ΔNLL {cell['delta_nll']:+.4f}", flush=True)  # fmt: skip
        result["pytorch_fp32_nll"] = float(nll(ref[:-1], stream[1:]).mean())
        p50 = p50_interleaved({k: s for k, (s, _) in contenders.items()}, stream[: args.timed], args.rounds)
    base, base_int8 = p50["rnnedge-fp32"], p50["rnnedge-int8-dynamic"]
    result["speed"] = {k: {"p50_us": v, "ratio_vs_rnnedge_fp32": v / base,
                           "ratio_vs_rnnedge_int8_dynamic": v / base_int8} for k, v in p50.items()}  # fmt: skip
    result["env"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(args.out, result)
    for k, v in result["speed"].items():
        print(f"{k:24s} p50 {v['p50_us']:7.1f} µs = {v['ratio_vs_rnnedge_fp32']:.2f}x rnnedge fp32, "
              f"{v['ratio_vs_rnnedge_int8_dynamic']:.2f}x rnnedge int8-dynamic")  # fmt: skip
    print(f"load {result['env']['load_avg_start']} -> {result['env']['load_avg_end']}; wrote {args.out}")


if __name__ == "__main__":
    main()
