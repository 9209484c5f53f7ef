"""The bundled minGRU on Qualcomm's HTP simulator (onnxruntime-qnn): a16w8, a8w8 and htp-fp16 against fp32.

The bundled model is exported with `--target qnn-htp`; each recipe makes its variant of qnn-htp/step.onnx
(calibrated on the first 90% of the text, state fed back; rnnedge.quantization). Then, on the HTP
(CPU fallback off) next to the fp32 graph on this CPU, one stream of `--tokens` held-out characters from
zero state: NLL delta (nats/char), top-1 agreement, each layer's state relative error at several t
(accumulated: the HTP's own state fed back), and the one-step error (the HTP step fed fp32's state) for
the integer recipes. The state clip rate is the quantize report's (held-out text, fp32 states vs the
calibrated ranges). `--mixers` also tries every registered mixer (tiny untrained models): node count and
whether the HTP takes the a8w8 step graph whole, or the node that stops it.

This is Qualcomm's simulator of the Hexagon NPU, not a phone: wall times measure the simulator.

    nice -n 10 python benchmarks/qnn_htp.py [--data PATH] [--tokens 300] [--mixers]

Writes benchmarks/results/qnn_htp.json (machine, versions, every figure).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.assets import default_model_path
from rnnedge.errors import RnnedgeError
from rnnedge.exporter import export_model
from rnnedge.inference import nll, open_graph
from rnnedge.models import MIXER_NAMES
from rnnedge.quantization import quantize_export
from rnnedge.targets import target_spec, where
from rnnedge.targets.isa import cpu_model

OUT = Path(__file__).resolve().parent / "results" / "qnn_htp.json"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
RECIPES = ("a16w8", "a8w8", "htp-fp16")
CHECKPOINTS = (10, 30, 100, 300, 1000, 2000)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def run_pair(folder: Path, variant: str, ids: np.ndarray, one_step: bool) -> dict[str, Any]:
    """The variant on the HTP vs fp32 on this CPU over ids (T,), one stream from zero state."""
    fp32 = open_graph(folder / "step.onnx", "step", threads=1)
    htp = open_graph(folder / f"step.{variant}.onnx", "step", "qnn-htp", threads=1)
    sf, sh = fp32.zero_states(1), htp.zero_states(1)
    lf, lh, acc, one = [], [], [], []
    start = time.perf_counter()
    for t in range(len(ids) - 1):
        x = ids[t : t + 1]  # (1,)
        if one_step:  # the HTP step from fp32's state: the one-step error, without feedback
            _, from_fp32 = htp.run(x, sf)
        a, sf = fp32.run(x, sf)
        b, sh = htp.run(x, sh)
        lf.append(a[0])
        lh.append(b[0])
        acc.append([rel_error(h, f) for h, f in zip(sh, sf, strict=True)])
        if one_step:
            one.append([rel_error(h, f) for h, f in zip(from_fp32, sf, strict=True)])
    seconds = time.perf_counter() - start
    logits_f, logits_h = np.stack(lf), np.stack(lh)  # (T-1, V)
    targets = ids[1:]
    at = [t for t in CHECKPOINTS if t <= len(acc)]
    acc_arr = np.asarray(acc)  # (T-1, S)

    def window(arr: np.ndarray, t: int) -> list[float]:  # mean over t/2..t: a smoothed value at t
        return [round(float(v), 5) for v in arr[t // 2 : t].mean(axis=0)]

    out: dict[str, Any] = {
        "steps": len(targets),
        "nll_fp32": round(float(nll(logits_f, targets).mean()), 5),
        "nll_htp": round(float(nll(logits_h, targets).mean()), 5),
        "top1_agreement": round(float((logits_f.argmax(-1) == logits_h.argmax(-1)).mean()), 4),
        "state_rel_error_per_layer": {str(t): window(acc_arr, t) for t in at},
        "seconds_per_step_simulator": round(seconds / len(targets) / (2 if one_step else 1), 4),
    }
    out["nll_delta"] = round(out["nll_htp"] - out["nll_fp32"], 5)
    if at and at[-1] > 100:  # the goal: error at the last t <= 1.5x the error at t = 100, per layer
        ratio = np.asarray(window(acc_arr, at[-1])) / np.maximum(np.asarray(window(acc_arr, 100)), 1e-12)
        out[f"state_error_growth_t{at[-1]}_vs_t100"] = [round(float(v), 3) for v in ratio]
    if one:
        one_arr = np.asarray(one)
        out["one_step_state_rel_error"] = [round(float(v), 5) for v in one_arr[len(one_arr) // 2 :].mean(axis=0)]
        out["accumulated_state_rel_error"] = [round(float(v), 5) for v in acc_arr[len(acc_arr) // 2 :].mean(axis=0)]
    return out


def mixers_table(root: Path, calib: Path) -> dict[str, Any]:
    """Every registered mixer (tiny, untrained): does the HTP take the a8w8 step graph whole?"""
    from rnnedge.training.checkpoint import save_checkpoint
    from tests.conftest import tiny_model
    from tests.test_export import VOCAB

    text = "".join(c for c in calib.read_text(encoding="utf-8")[:20000].lower() if c in VOCAB.chars)
    small = root / "mixers.txt"
    small.write_text(text, encoding="utf-8")
    table = {}
    for arch in MIXER_NAMES:
        ck = save_checkpoint(
            root / f"ck_{arch}", tiny_model(arch, len(VOCAB), seed=2), VOCAB, val_loss=1.0, training={}
        )
        row: dict[str, Any] = {}
        try:
            ex = export_model(ck, root / f"ex_{arch}", max_seq_len=256, target="qnn-htp")
            row["nodes"] = ex.manifest["qnn_htp"]["graph"]["nodes"]
            q = quantize_export(ex.out_dir, "a8w8", calib_text=small, calib_steps=100, calib_streams=2, verify_steps=20)
            row |= {"fallback_free": True, "htp_vs_cpu_same_graph": q.graphs["step"]["htp"]["vs_cpu_same_graph"]}
        except RnnedgeError as exc:
            row |= {"fallback_free": False, "stopped_by": str(exc)[:400]}
        table[arch] = row
        print(arch, row)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--tokens", type=int, default=300, help="held-out characters run on the HTP per recipe")
    ap.add_argument("--mixers", action="store_true", help="also try every registered mixer (tiny models)")
    args = ap.parse_args()
    why = target_spec("qnn-htp").probe()
    if not why.ok:
        raise SystemExit(f"qnn-htp cannot run here: {why.reason}")
    text = args.data.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    result: dict[str, Any] = {
        "machine": {"cpu": cpu_model(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {p: importlib.metadata.version(p) for p in ("onnxruntime", "onnxruntime-qnn", "onnx", "numpy")},
        "target": where("qnn-htp"),
        "note": "Qualcomm's x86_64 HTP simulator (onnxruntime-qnn), not a phone; times measure the simulator",
        "data": {"file": args.data.name, "calibration": "first 90%", "held_out_tokens": args.tokens},
        "recipes": {},
    }
    with tempfile.TemporaryDirectory(prefix="rnnedge-qnn-bench-") as tmp:
        root = Path(tmp)
        (root / "calib.txt").write_text(text[:cut], encoding="utf-8")
        (root / "eval.txt").write_text(text[cut:], encoding="utf-8")
        ex = export_model(default_model_path(), root / "export", max_seq_len=4096, target="qnn-htp")
        folder = ex.out_dir / "qnn-htp"
        fp32 = open_graph(folder / "step.onnx", "step")
        ids = fp32.info.vocab.encode(text[cut : cut + args.tokens + 1])
        for name in RECIPES:
            t0 = time.perf_counter()
            calib = None if name == "htp-fp16" else root / "calib.txt"
            q = quantize_export(ex.out_dir, name, calib_text=calib, eval_text=root / "eval.txt", verify_steps=0)
            report = q.graphs["step"]
            row = {
                "quantize_seconds": round(time.perf_counter() - t0, 1),
                "cpu_same_graph_loss_delta_whole_held_out": report["loss_delta"],
                "held_out_chars_cpu": report["eval_chars"],
                "state_clip": report["htp"]["state_clip"],
                "htp": run_pair(folder, name, ids, one_step=name != "htp-fp16"),
            }
            result["recipes"][name] = row
            print(name, json.dumps(row["htp"]))
        result["graph"] = {k: v for k, v in ex.manifest["qnn_htp"]["graph"].items() if k != "sha256"}
        if args.mixers:
            result["mixers"] = mixers_table(root, root / "calib.txt")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
