"""Drift benchmark: per-timestep int8-vs-fp32 drift on tiny-shakespeare val (last 10% of the text).

Models: the bundled default model (if present), the four archs at the default size (d_model 128,
3 layers) trained briefly here with a plain AdamW loop (--train-seconds each), all with dynamic int8;
the default/minGRU model with static int8 as well; and the LSTM counter-example: static QDQ with the
recurrent state quantized too, next to static QDQ with the state kept float.
int8 graphs come from `rnnedge.quantization.quantize_export` (helper 4) when it works, else straight
from ONNX Runtime's quantizers (recorded per model in the JSON as "quantizer").

    python benchmarks/drift_bench.py [--steps 10000] [--streams 8] [--train-seconds 60] [--ckpts DIR]
Writes benchmarks/results/drift_bench.json and the comparison report benchmarks/results/drift_default/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rnnedge.io import write_json
from rnnedge.models import ModelConfig, build_model
from rnnedge.quantization.d_summary import summarize
from rnnedge.quantization.drift import run_drift
from rnnedge.quantization.report import write_report
from rnnedge.training.checkpoint import load_checkpoint, save_checkpoint
from rnnedge.vocab import CharVocab

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data" / "tinyshakespeare.txt"
if not DATA.is_file():
    DATA = Path("/work/shared/data/tinyshakespeare.txt")


def train_briefly(arch: str, train_ids: np.ndarray, vocab: CharVocab, seconds: float, out: Path) -> dict:
    """A plain AdamW loop (B=16, T=64, lr 3e-3, clip 1.0) for `seconds`; saves a checkpoint to `out`."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=len(vocab), arch=arch))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    data = torch.from_numpy(train_ids)
    gen = torch.Generator().manual_seed(0)
    start, step, loss = time.perf_counter(), 0, float("nan")
    while time.perf_counter() - start < seconds:
        pos = torch.randint(0, len(data) - 65, (16,), generator=gen)
        batch = torch.stack([data[p : p + 65] for p in pos.tolist()])  # (B, T+1)
        logits, _ = model(batch[:, :-1])  # (B, T, V)
        loss_t = torch.nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step, loss = step + 1, float(loss_t.detach())
    facts = {"train_steps": step, "train_seconds": round(time.perf_counter() - start, 1), "train_loss": round(loss, 4)}
    save_checkpoint(out, model.eval(), vocab, training={**facts, "note": "drift_bench brief training"})
    return facts


def trained(arch: str, train_ids: np.ndarray, vocab: CharVocab, seconds: float, ckpts: Path) -> tuple[Path, dict]:
    """The briefly trained checkpoint of `arch` under `ckpts`: reused if an earlier run left it, else trained."""
    ckpt = ckpts / f"ckpt_{arch}"
    if (ckpt / "config.json").is_file():
        tr = load_checkpoint(ckpt).training or {}
        facts = {k: tr[k] for k in ("train_steps", "train_seconds", "train_loss") if k in tr}
        if "train_steps" not in facts and "steps" in tr:
            facts["train_steps"] = tr["steps"]
        return ckpt, {**facts, "reused_checkpoint": True}
    return ckpt, train_briefly(arch, train_ids, vocab, seconds, ckpt)


def long_memory_lstm(ckpt: Path, out: Path, bias: float = 4.0) -> None:
    """The LSTM with every forget-gate bias raised by `bias` (sigma(f) ~ 0.98): |c| integrates and grows as in
    long-trained LSTMs. A constructed stress case for the quantized-state counter-example."""
    ck = load_checkpoint(ckpt)
    with torch.no_grad():
        for block in ck.model.blocks:
            rnn = block.mixer.rnn
            h = rnn.hidden_size
            rnn.bias_ih_l0[h : 2 * h] += bias  # torch gate order [i, f, g, o]
    save_checkpoint(out, ck.model.eval(), ck.vocab, training={"note": f"forget-gate bias +{bias} (drift_bench)"})


def export(ckpt: Path, out: Path) -> None:
    from rnnedge.exporter import export_model

    export_model(ckpt, out, max_seq_len=4096, simplify=True, verify=False)


def _ort_static(folder: Path, calib: str, quantize_state: bool) -> None:
    """Fallback: ORT quantize_static (QDQ, symmetric int8, MinMax) over every step fed by real text."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    sess = ort.InferenceSession(str(folder / "step.onnx"), providers=["CPUExecutionProvider"])
    from rnnedge.graphmeta import parse_metadata

    info = parse_metadata(sess.get_modelmeta().custom_metadata_map)
    ids = info.vocab.encode(calib, on_unknown="skip")[: 8 * 65].reshape(8, 65)
    state = [np.zeros((8, s.width), np.float32) for s in info.states]
    feeds = []
    for t in range(64):
        feed = {"input_ids": ids[:, t].copy(), **{s.input: v for s, v in zip(info.states, state, strict=True)}}
        feeds.append(feed)
        state = sess.run([s.output for s in info.states], feed)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.it, None)

    ops = None if quantize_state else ["MatMul", "Gemm", "Gather"]
    quantize_static(
        str(folder / "step.onnx"),
        str(folder / "step.int8.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=ops,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )


def quantize(folder: Path, method: str, calib_path: Path, quantize_state: bool = False) -> str:
    """Write folder/step.int8.onnx; returns which quantizer made it."""
    try:
        from rnnedge.quantization.quantize import quantize_export

        quantize_export(
            folder,
            method=method,
            calib_text=calib_path,
            graphs=("step",),
            quantize_state=quantize_state,
            on_unknown="skip",
        )
        return f"rnnedge.quantize_export({method}{', quantize_state' if quantize_state else ''})"
    except Exception as exc:  # helper 4's quantizer may not handle this case: fall back, and say so
        print(f"  quantize_export failed ({type(exc).__name__}: {exc}); using ORT directly", file=sys.stderr)
    if method == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(folder / "step.onnx"), str(folder / "step.int8.onnx"), weight_type=QuantType.QInt8)
        return "onnxruntime.quantize_dynamic"
    _ort_static(folder, calib_path.read_text(encoding="utf-8"), quantize_state)
    return f"onnxruntime.quantize_static(QDQ{', all ops incl. state' if quantize_state else ', MatMul/Gemm/Gather'})"


def variant(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for f in dst.glob("*.int8.onnx"):
        f.unlink()
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--train-seconds", type=float, default=60.0)
    ap.add_argument("--archs", default="mingru,minlstm,gru,lstm")
    ap.add_argument("--ckpts", type=Path, default=None, help="keep/reuse the briefly trained checkpoints here")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "drift_bench.json")
    ap.add_argument("--report", type=Path, default=ROOT / "results" / "drift_default")
    args = ap.parse_args()
    torch.set_num_threads(2)
    text = DATA.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    train_text, val_text = text[:cut], text[cut:]
    vocab = CharVocab.from_text(text)
    work = Path(tempfile.mkdtemp(prefix="drift_bench-"))
    calib = work / "calib.txt"
    calib.write_text(train_text[-200_000:], encoding="utf-8")
    models: list[tuple[str, Path, dict]] = []  # (name, export folder, facts)
    try:
        from rnnedge.assets import default_model_path

        dflt = default_model_path()
        if (dflt / "config.json").is_file() or any(dflt.glob("*.safetensors")):
            ck = load_checkpoint(dflt)
            export(dflt, work / "default")
            models.append(
                (
                    "default",
                    work / "default",
                    {"source": "bundled default model", "arch": ck.model.config.arch, "val_loss_ckpt": ck.val_loss},
                )
            )
    except Exception as exc:  # the bundled model may not exist yet
        print(f"default model unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
    for arch in args.archs.split(","):
        ckpt, facts = trained(arch, vocab.encode(train_text), vocab, args.train_seconds, args.ckpts or work)
        print(f"trained {arch}: {facts}", flush=True)
        export(ckpt, work / arch)
        models.append((arch, work / arch, {"source": "default size, brief training in this benchmark", **facts}))
    base = {n: p for n, p, _ in models}
    plan = [(n, p, "dynamic", False, f) for n, p, f in models]
    first = "default" if "default" in base else "mingru"
    if first in base:
        plan.append((f"{first}-static", variant(base[first], work / f"{first}-static"), "static", False, {}))
    if "lstm" in base:
        plan.append(("lstm-static", variant(base["lstm"], work / "lstm-static"), "static", False, {}))
        plan.append(
            (
                "lstm-static-qstate",
                variant(base["lstm"], work / "lstm-qstate"),
                "static",
                True,
                {"note": "counter-example: the recurrent state itself quantized (QDQ on state outputs)"},
            )
        )
        long_memory_lstm((args.ckpts or work) / "ckpt_lstm", work / "ckpt_lstm_longmem")
        export(work / "ckpt_lstm_longmem", work / "lstm-longmem")
        note = {"note": "constructed stress case: the lstm above with forget-gate bias +4, so |c| grows"}
        plan.append(("lstm-longmem", work / "lstm-longmem", "dynamic", False, note))
        qdir = variant(work / "lstm-longmem", work / "lstm-longmem-qstate")
        plan.append(("lstm-longmem-static-qstate", qdir, "static", True, note))
    results, entries = [], []
    for name, folder, method, qstate, facts in plan:
        quantizer = quantize(folder, method, calib, qstate)
        t0 = time.perf_counter()
        r = run_drift(folder, val_text, steps=args.steps, streams=args.streams, name=name)
        secs = time.perf_counter() - t0
        m = summarize(r)
        fp32_size, int8_size = (folder / "step.onnx").stat().st_size, (folder / "step.int8.onnx").stat().st_size
        at = m["state_error"]["at"]
        entry = {
            "name": name,
            "arch": r.arch,
            "method": method,
            "quantize_state": qstate,
            "quantizer": quantizer,
            **facts,
            "steps": r.steps,
            "streams": r.streams,
            "drift_seconds": round(secs, 2),
            "loss_fp32": round(r.loss_fp32, 5),
            "loss_int8": round(r.loss_int8, 5),
            "loss_delta": round(r.loss_int8 - r.loss_fp32, 5),
            "size_fp32": fp32_size,
            "size_int8": int8_size,
            "size_ratio": round(int8_size / fp32_size, 3),
            "state_error_at": {k: float(f"{v:.4g}") for k, v in at.items()},
            "worst_state": m["state_error"]["worst_state"],
            "growth_10_to_last": m["state_error"]["fit"]["growth_ratio"],
            "alpha": m["state_error"]["fit"]["alpha"],
            "saturation_level": m["state_error"]["fit"]["saturation_level"],
            "saturation_step": m["state_error"]["fit"]["saturation_step"],
            "accumulation_last": m["state_error"]["accumulation_last"],
            "top1_agreement": m["top1_agreement"],
            "kl_mean": m["kl_mean"],
            "divergence_step": m["free_running"]["diverged_at"],
        }
        print(json.dumps(entry), flush=True)
        results.append(r)
        entries.append(entry)
    # Speed: the default-model run (4096 steps x 8 streams x 3 sessions), timed separately.
    speed_name = first if first in base else models[0][0]
    t0 = time.perf_counter()
    rs = run_drift(base[speed_name], val_text, steps=4096, streams=8, gen_steps=1000)
    speed = {
        "model": speed_name,
        "steps": 4096,
        "streams": 8,
        "sessions": 3,
        "seconds": round(time.perf_counter() - t0, 2),
        "seconds_per_step_all_three_sessions": round(rs.seconds / (4096 + 2000 / 3), 6),
        "cpu_threads": 1,
        "note": "includes 1000-char greedy check with both graphs; box shared, load varies",
    }
    goal = {
        e["name"]: {
            "err_10": e["state_error_at"].get("10"),
            "err_last": e["state_error_at"]["last"],
            "ratio": e["growth_10_to_last"],
            "ok (<=1.5)": (e["growth_10_to_last"] or 0) <= 1.5,
        }
        for e in entries
        if e["method"] == "dynamic"
    }
    in_report = [r for r in results if r.name not in ("lstm-static", f"{first}-static")]  # keep the folder < 1 MB
    write_report(
        in_report,
        args.report,
        {
            "data": "tinyshakespeare.txt val (last 10%)",
            "steps": args.steps,
            "streams": args.streams,
            "on_unknown": "error",
            "prompt": None,
            "gen_steps": 1000,
        },
    )
    out = {
        "benchmark": "drift_bench",
        "data": "tinyshakespeare val (last 10%)",
        "val_chars": len(val_text),
        "torch_threads": torch.get_num_threads(),
        "ort_threads": 1,
        "cpu_count": os.cpu_count(),
        "models": entries,
        "goal_state_error_t_last_vs_t10": goal,
        "speed_default_4096x8x3": speed,
        "report": str(args.report.relative_to(ROOT.parent))
        if args.report.is_relative_to(ROOT.parent)
        else str(args.report),
    }
    write_json(args.json, out)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"goal": goal, "speed": speed}, indent=1))


if __name__ == "__main__":
    main()
