"""Char-level tiny-shakespeare: every registered mixer at ~the same parameter count and wall-time budget.

The mixers are those of rnnedge/models/registry.py (minGRU, minLSTM, GRU, LSTM, Elman). Each keeps
d_model, layers and the MLP; only the recurrent width d_hidden changes so that the total parameter
count matches the reference mixer's (--reference-arch at --reference-expansion; within --tolerance).
Counts come from the shapes each mixer's spec builds (on torch's meta device: nothing is allocated),
so a new mixer needs no code here. Each run trains with `rnnedge.training.train` (the `rnnedge train`
loop) for --budget seconds (the cosine schedule follows time), then the checkpoint is scored on the
whole validation split (last 10% of the text, one stream, carried state).
Paper (much more compute): minGRU 1.548, minLSTM 1.555 nats/char.

    python benchmarks/shakespeare.py --budget 180      # -> benchmarks/results/shakespeare.json
    python benchmarks/shakespeare.py --quick           # smoke run (20 s per mixer, tiny model)

--data PATH trains on a local text; by default tiny-shakespeare is downloaded once into the cache
(`rnnedge train --data shakespeare` does the same).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import torch

from rnnedge.errors import RnnedgeError
from rnnedge.io import write_json
from rnnedge.models import MIXER_NAMES, ModelConfig
from rnnedge.training.config import TrainConfig
from rnnedge.training.data import SHAKESPEARE, VAL_FRACTION, data_record, read_text, resolve_data
from rnnedge.training.evaluate import evaluate_checkpoint
from rnnedge.training.train import train
from rnnedge.training.weights import implied_shapes

RESULTS = Path(__file__).resolve().parent / "results" / "shakespeare.json"


def params(arch: str, d_model: int, d_hidden: int, layers: int, mlp_ratio: float, vocab: int) -> int:
    """Parameter count of the model, from the shapes its mixer's spec builds (nothing allocated)."""
    cfg = ModelConfig(vocab, arch, layers, d_model, d_hidden / d_model, mlp_ratio)
    return sum(math.prod(shape) for shape in implied_shapes(cfg).values())


def match_width(arch: str, target: int, d_model: int, layers: int, mlp_ratio: float, vocab: int) -> int:
    """The d_hidden whose model comes closest to `target` parameters (counts grow with d_hidden)."""
    lo, hi = 1, 8 * d_model
    while lo < hi:
        mid = (lo + hi) // 2
        if params(arch, d_model, mid, layers, mlp_ratio, vocab) < target:
            lo = mid + 1
        else:
            hi = mid
    cands = [h for h in (lo - 1, lo) if h >= 1]
    return min(cands, key=lambda h: abs(params(arch, d_model, h, layers, mlp_ratio, vocab) - target))


def width_matched_mixers() -> list[str]:
    """Registered mixers whose size follows d_hidden (the recurrent ones); the attention mixers ignore it
    and are compared at equal parameters by benchmarks/compare.py instead."""
    return [a for a in MIXER_NAMES if params(a, 64, 64, 1, 2.0, 65) != params(a, 64, 96, 1, 2.0, 65)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=SHAKESPEARE, help="Text file; default: tiny-shakespeare (cached download).")
    ap.add_argument("--budget", type=float, default=180.0, help="Training seconds per mixer.")
    ap.add_argument("--archs", nargs="+", default=width_matched_mixers(), choices=width_matched_mixers())
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--mlp-ratio", type=float, default=2.0)
    ap.add_argument("--reference-arch", default="mingru", choices=MIXER_NAMES, help="Mixer whose count the rest match.")
    ap.add_argument("--reference-expansion", type=float, default=2.0, help="Its d_hidden / d_model.")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--quick", action="store_true", help="Smoke run: 20 s per mixer, d_model 32, 1 layer.")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.budget, args.d_model, args.layers, args.seq_len = 20.0, 32, 1, 64
    torch.set_num_threads(args.threads)
    try:
        run(args)
    except RnnedgeError as exc:
        raise SystemExit(f"shakespeare.py: error: {exc}") from None


def run(args: argparse.Namespace) -> None:
    data_path = resolve_data(args.data)
    text = read_text(data_path)
    val_text = text[len(text) - int(len(text) * VAL_FRACTION) :]
    vocab = len(set(text))
    d_ref = round(args.reference_expansion * args.d_model)
    target = params(args.reference_arch, args.d_model, d_ref, args.layers, args.mlp_ratio, vocab)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnedge-shakespeare-") as tmp:
        for arch in args.archs:
            d_hidden = match_width(arch, target, args.d_model, args.layers, args.mlp_ratio, vocab)
            n_params = params(arch, args.d_model, d_hidden, args.layers, args.mlp_ratio, vocab)
            if abs(n_params - target) > args.tolerance * target:
                raise SystemExit(f"{arch}: cannot match {target} params within {args.tolerance:.0%} ({n_params})")
            cfg = TrainConfig(
                arch=arch,
                n_layers=args.layers,
                d_model=args.d_model,
                expansion=d_hidden / args.d_model,
                mlp_ratio=args.mlp_ratio,
                seq_len=args.seq_len,
                batch_size=args.batch_size,
                steps=1_000_000,  # the time budget ends the run; the LR schedule follows time
                lr=args.lr,
                warmup=50,
                eval_every=1_000_000_000,  # evaluate once, at the end
                eval_batches=4,
                seed=args.seed,
                device=args.device,
                max_time=args.budget,
                threads=args.threads,
            )
            out = Path(tmp) / arch
            res = train(cfg, data_path, out, quiet=True)
            ev = evaluate_checkpoint(out, val_text, chunk_len=1024, device=args.device)
            row = {
                "arch": arch,
                "d_hidden": d_hidden,
                "params": n_params,
                "params_vs_reference": round(n_params / target, 4),
                "steps": res.steps_done,
                "tokens_seen": res.tokens_seen,
                "train_time_s": round(res.train_time_s, 1),
                "tokens_per_s": round(res.tokens_seen / res.train_time_s),
                "final_train_loss": round(res.train_loss or float("nan"), 4),
                "val_loss_nats": round(ev["loss_nats"], 4),
                "val_bits_per_char": round(ev["bits_per_char"], 4),
                "val_chars": ev["chars"],
            }
            rows.append(row)
            print(
                f"{arch:8s} d_hidden {d_hidden:4d} params {n_params:,} steps {res.steps_done} "
                f"({row['tokens_per_s']:,} tok/s): val {row['val_loss_nats']:.4f} nats/char",
                flush=True,
            )
    write_json(
        args.out,
        {
            "benchmark": "shakespeare",
            "what": "val loss (nats/char, whole val split, carried state) after the same training wall time",
            "quick": args.quick,
            "data": data_record(text, args.data, data_path),
            "budget_s_per_arch": args.budget,
            "d_model": args.d_model,
            "layers": args.layers,
            "mlp_ratio": args.mlp_ratio,
            "seq_len": args.seq_len,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "threads": args.threads,
            "device": args.device,
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "reference": {"arch": args.reference_arch, "d_hidden": d_ref},
            "target_params": target,
            "paper_reference_nats": {"mingru": 1.548, "minlstm": 1.555},
            "results": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
