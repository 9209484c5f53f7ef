"""Drift benchmark: per-timestep drift of every precision variant against fp32, for every registered mixer.

Data: `--data PATH` (or `shakespeare`, the default: tiny-shakespeare, downloaded once and cached as the
pipeline does); the first 90% trains and calibrates, the drift runs on the last 10%.
Models: the bundled default model (if present), then every registered mixer (`rnnedge.models.registry`,
or `--archs`) at the default size, trained briefly here with a plain AdamW loop (`--train-seconds` each).
Each export gets the `--recipes` variants (step graph only) from `rnnedge.quantization.quantize_export`,
and every variant present in the folder is compared with fp32. The LSTM counter-example adds a static
recipe that quantizes the recurrent state itself, on the LSTM and on a constructed long-memory LSTM.

    python benchmarks/drift_bench.py [--data PATH] [--steps 10000] [--streams 8] [--archs mingru,elman]
Writes benchmarks/results/drift_bench.json and the comparison report benchmarks/results/drift_default/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rnnedge.drift import run_drift, summarize, write_report
from rnnedge.drift.graphs import step_variants
from rnnedge.errors import RnnedgeError
from rnnedge.graphmeta import FP32, graph_file
from rnnedge.io import write_json
from rnnedge.models import ModelConfig, build_model
from rnnedge.models.registry import MIXER_NAMES, check_mixer_name
from rnnedge.training.checkpoint import load_checkpoint, save_checkpoint
from rnnedge.training.data import SHAKESPEARE, VAL_FRACTION, read_text, resolve_data
from rnnedge.vocab import CharVocab

ROOT = Path(__file__).resolve().parent
STATE_RECIPE = "int8-qdq-state"  # the counter-example: static QDQ with the recurrent state quantized too
FLAT_RATIO = 1.5  # goal: state error at the last t <= 1.5x its value at t = 10


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


def quantize(folder: Path, recipes: list[str], calib: Path, heldout: Path) -> dict[str, str]:
    """Make each recipe's step variant in `folder`; {recipe: error} for those the quantizer refused."""
    from rnnedge.quantization import quantize_export, recipe

    failed = {}
    for name in recipes:
        chosen = (
            dataclasses.replace(recipe("int8-qdq", quantize_state=True, graphs=("step",)), name=STATE_RECIPE)
            if name == STATE_RECIPE
            else recipe(name, graphs=("step",))
        )
        try:
            quantize_export(folder, chosen, calib_text=calib, eval_text=heldout, on_unknown="skip")
        except Exception as exc:  # one recipe failing must not lose the other measurements; it is recorded
            failed[name] = f"{type(exc).__name__}: {exc}"
            print(f"  {folder.name}: {name} failed: {failed[name]}", file=sys.stderr, flush=True)
    return failed


def entry(name: str, folder: Path, r, facts: dict) -> dict:  # type: ignore[no-untyped-def]
    """One JSON row: losses, sizes, the state-error figures of the worst state, top-1 and divergence."""
    m = summarize(r)
    se, loss = m["state_error"], m["loss"]
    fp32_size = (folder / graph_file("step")).stat().st_size
    size = (folder / graph_file("step", r.variant.variant)).stat().st_size
    return {
        "name": name,
        "arch": r.arch,
        "variant": r.variant.variant,
        "recipe": r.variant.recipe,
        **facts,
        "steps": r.steps,
        "streams": r.streams,
        "drift_seconds": round(r.seconds, 2),
        "loss_fp32": round(loss["baseline_nats_per_char"], 5),
        "loss_variant": round(loss["variant_nats_per_char"], 5),
        "loss_delta": round(loss["delta_nats_per_char"], 5),
        "loss_delta_2se": round(2 * loss["delta_stderr_nats_per_char"], 5),
        "size_fp32": fp32_size,
        "size_variant": size,
        "size_ratio": round(size / fp32_size, 3),
        "state_error_at": {k: float(f"{v:.4g}") for k, v in se["at"].items()},
        "worst_state": se["worst_state"],
        "growth_10_to_last": se["fit"]["growth_ratio"],
        "alpha": se["fit"]["alpha"],
        "saturation_level": se["fit"]["saturation_level"],
        "saturation_step": se["fit"]["saturation_step"],
        "accumulation_last": se["accumulation_last"],
        "top1_agreement": m["top1_agreement"],
        "kl_mean": m["kl_mean"],
        "divergence_step": m["free_running"]["diverged_at"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=SHAKESPEARE, help="text file, or 'shakespeare' (downloaded once, cached)")
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--train-seconds", type=float, default=60.0)
    ap.add_argument("--speed-steps", type=int, default=4096, help="steps of the timed run (8 streams)")
    ap.add_argument("--archs", default=",".join(MIXER_NAMES), help="registered mixers (default: all)")
    ap.add_argument("--recipes", default="int8-dynamic,int8-qdq", help="variants made for every model")
    ap.add_argument("--no-default", action="store_true", help="skip the bundled default model")
    ap.add_argument("--ckpts", type=Path, default=None, help="keep/reuse the briefly trained checkpoints here")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "drift_bench.json")
    ap.add_argument("--report", type=Path, default=ROOT / "results" / "drift_default")
    args = ap.parse_args()
    archs = [check_mixer_name(a) for a in args.archs.split(",") if a]
    recipes = [r for r in args.recipes.split(",") if r]
    torch.set_num_threads(2)
    data_path = resolve_data(args.data)
    text = read_text(data_path)
    cut = int(len(text) * (1 - VAL_FRACTION))
    vocab = CharVocab.from_text(text)
    work = Path(tempfile.mkdtemp(prefix="drift_bench-"))
    calib, heldout = work / "calib.txt", work / "heldout.txt"
    calib.write_text(text[max(0, cut - 200_000) : cut], encoding="utf-8")
    heldout.write_text(text[cut:], encoding="utf-8")
    val_text = text[cut:]
    models: list[tuple[str, Path, list[str], dict]] = []  # (name, export folder, recipes, facts)
    from rnnedge.assets import default_model_path

    dflt = default_model_path()
    if not args.no_default and (dflt / "config.json").is_file():
        ck = load_checkpoint(dflt)
        export(dflt, work / "default")
        facts = {"source": "bundled default model", "val_loss_ckpt": ck.val_loss}
        models.append(("default", work / "default", recipes, facts))
    ckpts = args.ckpts or work
    for arch in archs:
        ckpt, facts = trained(arch, vocab.encode(text[:cut]), vocab, args.train_seconds, ckpts)
        print(f"trained {arch}: {facts}", flush=True)
        export(ckpt, work / arch)
        extra = [STATE_RECIPE] if arch == "lstm" else []
        models.append((arch, work / arch, recipes + extra, {"source": "default size, trained briefly here", **facts}))
    if "lstm" in archs:
        long_memory_lstm(ckpts / "ckpt_lstm", work / "ckpt_lstm_longmem")
        export(work / "ckpt_lstm_longmem", work / "lstm-longmem")
        note = {"note": "constructed stress case: the lstm above with forget-gate bias +4, so |c| grows"}
        models.append(("lstm-longmem", work / "lstm-longmem", ["int8-dynamic", STATE_RECIPE], note))
    results, entries, failures = [], [], {}
    for name, folder, wanted, facts in models:
        failed = quantize(folder, wanted, calib, heldout)
        failures.update({f"{name}/{k}": v for k, v in failed.items()})
        for variant in [v for v in step_variants(folder) if v != FP32]:
            r = run_drift(
                folder,
                val_text,
                variant=variant,
                steps=args.steps,
                streams=args.streams,
                on_unknown="skip",
                name=f"{name} {variant}",
            )
            entries.append(entry(f"{name} {variant}", folder, r, facts))
            print(json.dumps(entries[-1]), flush=True)
            results.append(r)
    if not results:
        raise SystemExit(f"no variant could be made: {failures}")
    # Speed: one run on the first model (3 sessions per step + a 1000-char greedy check).
    first_name, first_folder = models[0][0], models[0][1]
    rs = run_drift(
        first_folder, val_text, variant=results[0].variant.variant, steps=args.speed_steps, streams=8, on_unknown="skip"
    )
    speed = {
        "model": first_name,
        "variant": rs.variant.variant,
        "steps": rs.steps,
        "streams": 8,
        "sessions": 3,
        "seconds": round(rs.seconds, 2),
        "cpu_threads": 1,
        "note": "includes the 1000-char greedy check with both graphs; load on the machine varies",
    }
    goal = {
        e["name"]: {
            "err_10": e["state_error_at"].get("10"),
            "err_last": e["state_error_at"]["last"],
            "ratio": e["growth_10_to_last"],
            f"ok (<={FLAT_RATIO})": (e["growth_10_to_last"] or 0) <= FLAT_RATIO,
        }
        for e in entries
        if e["variant"] == "int8-dynamic"
    }
    in_report = [r for r in results if r.variant.variant in ("int8-dynamic", STATE_RECIPE)]  # keep it < 1 MB
    source = f"{data_path.name}, last {VAL_FRACTION:.0%}"
    settings = {"data": source, "steps": args.steps, "streams": args.streams, "on_unknown": "skip", "gen_steps": 1000}
    write_report(in_report or results, args.report, settings)
    out = {
        "benchmark": "drift_bench",
        "data": source,
        "val_chars": len(val_text),
        "torch_threads": torch.get_num_threads(),
        "ort_threads": 1,
        "cpu_count": os.cpu_count(),
        "models": entries,
        "quantizer_failures": failures,
        "goal_state_error_t_last_vs_t10": goal,
        "speed": speed,
        "report": str(args.report.relative_to(ROOT.parent))
        if args.report.is_relative_to(ROOT.parent)
        else str(args.report),
    }
    write_json(args.json, out)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"goal": goal, "speed": speed}, indent=1))


if __name__ == "__main__":
    try:
        main()
    except RnnedgeError as exc:  # bad --data, offline without a cached text, ...: one line
        raise SystemExit(f"drift_bench: {exc}") from None
