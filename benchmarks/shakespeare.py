"""Char-level tiny-shakespeare: the four archs at ~the same parameter count and the same wall-time budget.

Each arch keeps d_model, layers and the MLP; only the recurrent width d_hidden changes so that the
total parameter count matches minGRU's (within --tolerance). Each run trains with `rnnedge.training.train`
(the `rnnedge train` loop) for --budget seconds (the cosine schedule follows time), then the
checkpoint is scored on the whole validation split (last 10% of the text, one stream, carried state).
Paper (much more compute): minGRU 1.548, minLSTM 1.555 nats/char.

    python benchmarks/shakespeare.py --budget 180      # -> benchmarks/results/shakespeare.json
    python benchmarks/shakespeare.py --quick           # smoke run (20 s per arch, tiny model)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from rnnedge.io import write_json
from rnnedge.models import ModelConfig, build_model
from rnnedge.training.config import TrainConfig
from rnnedge.training.data import VAL_FRACTION, read_text, resolve_data
from rnnedge.training.evaluate import evaluate_checkpoint
from rnnedge.training.train import train

RESULTS = Path(__file__).resolve().parent / "results" / "shakespeare.json"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
ARCHS = ("mingru", "minlstm", "gru", "lstm")


def params(arch: str, d_model: int, d_hidden: int, layers: int, mlp_ratio: float, vocab: int) -> int:
    cfg = ModelConfig(vocab, arch, layers, d_model, d_hidden / d_model, mlp_ratio)
    return build_model(cfg).num_params()


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.is_file() else "shakespeare")
    ap.add_argument("--budget", type=float, default=180.0, help="Training seconds per arch.")
    ap.add_argument("--archs", nargs="+", default=list(ARCHS))
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--mlp-ratio", type=float, default=2.0)
    ap.add_argument("--mingru-expansion", type=float, default=2.0, help="Sets the target parameter count.")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--quick", action="store_true", help="Smoke run: 20 s per arch, d_model 32, 1 layer.")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.budget, args.d_model, args.layers, args.seq_len = 20.0, 32, 1, 64
    torch.set_num_threads(args.threads)
    data_path = resolve_data(args.data)
    text = read_text(data_path)
    val_text = text[len(text) - int(len(text) * VAL_FRACTION) :]
    vocab = len(set(text))
    target = params(
        "mingru", args.d_model, round(args.mingru_expansion * args.d_model), args.layers, args.mlp_ratio, vocab
    )
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
                "params_vs_mingru": round(n_params / target, 4),
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
                f"{arch:7s} d_hidden {d_hidden:4d} params {n_params:,} steps {res.steps_done} "
                f"({row['tokens_per_s']:,} tok/s): val {row['val_loss_nats']:.4f} nats/char",
                flush=True,
            )
    write_json(
        args.out,
        {
            "benchmark": "shakespeare",
            "what": "val loss (nats/char, whole val split, carried state) after the same training wall time",
            "quick": args.quick,
            "data": str(data_path),
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
            "target_params": target,
            "paper_reference_nats": {"mingru": 1.548, "minlstm": 1.555},
            "results": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
