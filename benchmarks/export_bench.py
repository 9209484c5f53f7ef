"""Exporter benchmark: export time, node counts, ONNX Runtime vs PyTorch eager speed, parity at T = 65,536.

Models: the bundled default model when it exists, and a freshly initialised model of the same size
(d_model 128, 3 layers, vocab 65) for every mixer in rnnedge/models/registry.py. Speeds are batch 1
on CPU with torch.set_num_threads(2) and ORT intra_op_num_threads = 2 (plus variants), each reported
next to its baseline measured in the same process; sessions come from rnnedge.inference. Parity at
T = 65,536 is the parallel graph (ORT, fp32) against an fp64 torch reference whose recurrences run
step by step (parallel-scan mixers: the plain loop, see sequential.py; the others already do: nn.GRU,
nn.LSTM, nn.RNN). Token ids are random (the figures are speeds and numerical parity), so no text is read.

    python benchmarks/export_bench.py [--reps 5] [--archs mingru,elman] [--no-default] [--long-t 4096]
Writes benchmarks/results/export_bench.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from sequential import sequential_scans

from rnnedge import __version__
from rnnedge.assets import default_model_path
from rnnedge.exporter import export_model
from rnnedge.inference import GraphSession, open_graph
from rnnedge.io import write_json
from rnnedge.models import MIXER_NAMES, ModelConfig, build_model, mixer_spec
from rnnedge.training.checkpoint import Checkpoint, load_checkpoint
from rnnedge.vocab import CharVocab

RESULT = Path(__file__).resolve().parent / "results" / "export_bench.json"
VOCAB = CharVocab("".join(chr(c) for c in range(32, 97)))  # 65 characters, like tiny-shakespeare


def median_seconds(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def graph(path: Path, threads: int = 2, level: str = "all") -> GraphSession:
    return open_graph(path, providers="cpu", threads=threads, optimization=level)


def parallel_speed(ckpt: Checkpoint, out: Path, lengths: list[int], reps: int, tmp: Path) -> dict[str, Any]:
    model = ckpt.model
    rng = np.random.default_rng(0)
    res: dict[str, Any] = {}
    variants = {"ort_all_2t": ("all", 2), "ort_extended_2t": ("extended", 2), "ort_all_1t": ("all", 1)}
    sessions = {name: graph(out / "parallel.onnx", th, lvl) for name, (lvl, th) in variants.items()}
    for t in lengths:
        ids = rng.integers(0, len(VOCAB), size=(1, t), dtype=np.int64)
        idx = torch.from_numpy(ids)
        with torch.no_grad(), _torch_threads(1):
            eager_1t = median_seconds(lambda idx=idx: model(idx), reps)
        with torch.no_grad():
            eager = median_seconds(lambda idx=idx: model(idx), reps)
        row: dict[str, Any] = {"torch_eager_2t_tok_s": round(t / eager), "torch_eager_1t_tok_s": round(t / eager_1t)}
        for name, sess in sessions.items():
            st = sess.zero_states(1)
            sec = median_seconds(lambda s=sess, st=st, ids=ids: s.run(ids, st), reps)
            row[f"{name}_tok_s"] = round(t / sec)
            row[f"{name}_vs_torch_2t"] = round(eager / sec, 3)
        if mixer_spec(model.config.arch).uses_scan:
            # The shipped graph always runs ceil(log2(65536)) = 16 scan passes; a graph exported for
            # exactly this T runs ceil(log2(T)) - what a runtime that chunks at T would use.
            sized = tmp / f"sized_{t}"
            export_model(ckpt, sized, max_seq_len=t, verify=False, simplify=True)
            sess = graph(sized / "parallel.onnx")
            st = sess.zero_states(1)
            sec = median_seconds(lambda s=sess, st=st, ids=ids: s.run(ids, st), reps)
            row["ort_all_2t_levels_for_T_tok_s"] = round(t / sec)
            row["ort_all_2t_levels_for_T_vs_torch_2t"] = round(eager / sec, 3)
        res[f"T{t}"] = row
    return res


def _torch_threads(n: int):
    class _Ctx:
        def __enter__(self) -> None:
            self.before = torch.get_num_threads()
            torch.set_num_threads(n)

        def __exit__(self, *exc: object) -> None:
            torch.set_num_threads(self.before)

    return _Ctx()


def step_speed(model, out: Path, tokens: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, len(VOCAB), size=(tokens,), dtype=np.int64)
    res: dict[str, Any] = {}
    eager: dict[int, float] = {}
    for threads in (2, 1):
        with torch.no_grad(), _torch_threads(threads):
            st = model.init_state(1)
            model(torch.from_numpy(ids[:1]).view(1, 1), st)
            t0 = time.perf_counter()
            for tok in ids:
                _, st = model(torch.tensor([[int(tok)]]), st)
            eager[threads] = (time.perf_counter() - t0) / tokens
        res[f"torch_eager_{threads}t_us_per_token"] = round(eager[threads] * 1e6, 1)
    ort_sec: dict[int, float] = {}
    for threads in (2, 1):
        sess = graph(out / "step.onnx", threads)
        state = sess.zero_states(1)
        sess.run(ids[:1], state)
        t0 = time.perf_counter()
        for tok in ids:
            _, state = sess.run(np.array([tok]), state)
        ort_sec[threads] = (time.perf_counter() - t0) / tokens
        res[f"ort_{threads}t_us_per_token"] = round(ort_sec[threads] * 1e6, 1)
        res[f"ort_{threads}t_speedup_vs_torch_2t"] = round(eager[2] / ort_sec[threads], 2)
    res["best_ort_vs_best_torch"] = round(min(eager.values()) / min(ort_sec.values()), 2)
    return res


def parity_long(model, out: Path, t: int) -> dict[str, Any]:
    rng = np.random.default_rng(2)
    ids = rng.integers(0, len(VOCAB), size=(1, t), dtype=np.int64)
    sess = graph(out / "parallel.onnx")
    state = [
        (0.5 * rng.standard_normal(z.shape)).astype(z.dtype) if z.dtype.kind == "f" else z for z in sess.zero_states(1)
    ]  # a non-zero carried state of every declared shape
    t0 = time.perf_counter()
    got_logits, got_state = sess.run(ids, state)
    ort_sec = time.perf_counter() - t0
    ref = build_model(model.config)
    ref.load_state_dict(model.state_dict())
    ref = ref.double().eval()
    with torch.no_grad(), sequential_scans():
        logits, new = ref(torch.from_numpy(ids), tuple(torch.from_numpy(s).double() for s in state))
        fp32_logits, _ = model(torch.from_numpy(ids), tuple(torch.from_numpy(s) for s in state))
    want_state = [s.numpy() for s in new]
    logit_err = float(np.abs(got_logits - logits.numpy()).max())
    state_err = max(float(np.abs(g - w).max()) for g, w in zip(got_state, want_state, strict=True))
    return {
        "T": t,
        "ort_max_abs_logit_diff_vs_fp64_sequential": logit_err,
        "ort_max_abs_state_diff_vs_fp64_sequential": state_err,
        "torch_fp32_eager_max_abs_logit_diff": float(np.abs(fp32_logits.numpy() - logits.numpy()).max()),
        "within_1e-4": logit_err <= 1e-4 and state_err <= 1e-4,
        "ort_seconds": round(ort_sec, 2),
    }


def bench_model(name: str, ckpt: Checkpoint, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    model = ckpt.model
    print(f"[{name}] export", flush=True)
    out = tmp / f"out_{name}"
    t0 = time.perf_counter()
    result = export_model(ckpt, out)
    export_s = time.perf_counter() - t0
    m = result.manifest
    row: dict[str, Any] = {
        "arch": model.config.arch,
        "params": model.num_params(),
        "export_seconds": round(export_s, 2),
        "graphs": {
            k: {
                "nodes_before_simplify": g["nodes_before_simplify"],
                "nodes": g["nodes"],
                "simplified": g["simplified"],
                "size_bytes": g["size_bytes"],
                "export_seconds": g["export_seconds"],
            }
            for k, g in m["graphs"].items()
        },
        "checks": {c["name"]: c["max_abs_diff"] for c in m["verification"]["checks"]},
        "tensorrt_static_ok": m["tensorrt"]["ok"],
    }
    print(f"[{name}] parallel speed", flush=True)
    row["parallel_tokens_per_s"] = parallel_speed(ckpt, out, args.lengths, args.reps, tmp)
    print(f"[{name}] step speed", flush=True)
    row["step"] = step_speed(model, out, args.step_tokens)
    print(f"[{name}] parity T={args.long_t}", flush=True)
    row["parity_long"] = parity_long(model, out, args.long_t)
    print(f"[{name}] {row['parity_long']} {row['step']}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--step-tokens", type=int, default=500)
    ap.add_argument("--long-t", type=int, default=65536)
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 4096], help="T of the parallel speed runs.")
    ap.add_argument("--archs", default=",".join(MIXER_NAMES), help="Comma-separated registered mixers.")
    ap.add_argument("--d-model", type=int, default=128, help="Width of the fresh models.")
    ap.add_argument("--layers", type=int, default=3, help="Blocks of the fresh models.")
    ap.add_argument("--no-default", action="store_true", help="skip the bundled default model")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args()
    unknown = sorted(set(args.archs.split(",")) - set(MIXER_NAMES))
    if unknown:
        ap.error(f"unknown mixer(s) {', '.join(unknown)}; registered: {', '.join(MIXER_NAMES)}")
    torch.set_num_threads(2)
    load_before = os.getloadavg()
    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rnnedge-export-bench-") as tmp_name:
        tmp = Path(tmp_name)
        default = default_model_path()
        if (default / "config.json").is_file() and not args.no_default:
            loaded = load_checkpoint(default)
            models["default"] = bench_model("default", loaded, args, tmp)
            models["default"]["val_loss"] = loaded.val_loss
        for arch in args.archs.split(","):
            torch.manual_seed(0)
            config = ModelConfig(vocab_size=len(VOCAB), arch=arch, n_layers=args.layers, d_model=args.d_model)
            model = build_model(config).eval()
            ckpt = Checkpoint(model=model, vocab=VOCAB, path=Path(f"<fresh {arch}, seed 0>"))
            models[f"fresh_{arch}"] = bench_model(f"fresh_{arch}", ckpt, args, tmp)
    write_json(
        args.out,
        {
            "benchmark": "export_bench",
            "rnnedge_version": __version__,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {
                "platform": platform.platform(),
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            },
            "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
            "settings": {
                "batch": 1,
                "torch_threads": 2,
                "ort_threads": "2 unless the key says 1t",
                "reps": args.reps,
                "step_tokens": args.step_tokens,
                "shipped_max_seq_len": 65536,
                "parallel_lengths": args.lengths,
                "long_t": args.long_t,
                "fresh_models": {"d_model": args.d_model, "layers": args.layers, "vocab": len(VOCAB)},
                "note": "absolute figures depend on the machine's load (see load_average); ratios are "
                "measured back to back in the same process",
            },
            "models": models,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
