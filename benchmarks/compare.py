"""RNNs vs attention at the edge: every registered mixer at one parameter count and one training budget,
then `rnnedge compare` on them (fp32 and int8, memory, latency vs t, throughput, drift).

The mixers are rnnedge/models/registry.py's (minGRU, minLSTM, GRU, LSTM, Elman, transformer, Aaren).
Parameter counts are matched to the reference (a minGRU, `--size`'s d_model and expansion) from the
shapes each mixer builds (rnnedge.models.costs on torch's meta device): a mixer whose size follows
d_hidden keeps d_model and gets the d_hidden that comes closest; one that ignores d_hidden (the
attention mixers) gets the d_model (a multiple of --heads) that comes closest, its MLP scaling with
it. Each mixer trains with `rnnedge.training.train` for --budget seconds (the cosine schedule follows
time) or, with --steps, for the same number of steps; then `rnnedge compare` exports, quantizes
(--variant) and measures all of them on the text's held-out last 10%.

    python benchmarks/compare.py --write                 # ~0.5M params, 70 s each, 2 CPU cores: ~13 min
    python benchmarks/compare.py --quick                 # smoke run: tiny models, seconds each
    python benchmarks/compare.py --size 5m --device cuda --write   # ~5M params, 30 min each (a GPU)

--data PATH trains on a local text; by default tiny-shakespeare is downloaded once into the cache.
Without --write the report goes to --out (default: a new temporary folder, printed at the end); with
--write to benchmarks/results/compare_<size>/ (the compare report plus training.json).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from rnnedge.errors import RnnedgeError
from rnnedge.io import write_json
from rnnedge.models import MIXER_NAMES, ModelConfig
from rnnedge.models.costs import config_costs
from rnnedge.training.config import TrainConfig
from rnnedge.training.data import SHAKESPEARE, data_record, read_text, resolve_data
from rnnedge.training.train import train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# The reference model of each size (a minGRU) and how every mixer trains at it.
SIZES = {
    "0.5m": dict(d_model=128, layers=3, expansion=2.0, mlp_ratio=2.0, heads=4, seq_len=128, batch_size=32, lr=3e-3),
    "5m": dict(d_model=352, layers=4, expansion=2.0, mlp_ratio=2.0, heads=8, seq_len=256, batch_size=64, lr=1.5e-3),
}
BUDGETS = {"0.5m": 70.0, "5m": 1800.0}  # training seconds per mixer
QUICK = dict(d_model=32, layers=1, expansion=2.0, mlp_ratio=2.0, heads=4, seq_len=32, batch_size=8, lr=3e-3)
QUICK_COMPARE = ["--eval-chars", "3000", "--positions", "1,64,256", "--lengths", "64,256", "--drift-steps", "128"]
QUICK_COMPARE += ["--stream-tokens", "512", "--latency-samples", "20", "--max-seq-len", "256"]


def params(config: ModelConfig) -> int:
    return config_costs(config).params


def follows_hidden(arch: str) -> bool:
    """Whether the mixer's size depends on d_hidden (the RNNs) or not (the attention mixers)."""
    a, b = (ModelConfig(vocab_size=8, arch=arch, d_model=8, expansion=e) for e in (1.0, 2.0))
    return params(a) != params(b)


def closest(candidates: range, build, target: int) -> ModelConfig:
    """The config from `build(k)`, k in `candidates`, whose parameter count is closest to `target`
    (counts grow with k: binary search, then the better neighbour)."""
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if params(build(candidates[mid])) < target:
            lo = mid + 1
        else:
            hi = mid
    near = [build(candidates[i]) for i in {max(lo - 1, 0), lo}]
    return min(near, key=lambda c: abs(params(c) - target))


def matched_config(arch: str, shape: dict, vocab: int, target: int) -> ModelConfig:
    """The config of `arch` whose parameter count comes closest to `target` (see the module doc)."""
    base = dict(vocab_size=vocab, arch=arch, n_layers=shape["layers"], mlp_ratio=shape["mlp_ratio"])
    base["n_heads"] = shape["heads"]
    d = shape["d_model"]
    if follows_hidden(arch):
        return closest(range(1, 8 * d), lambda h: ModelConfig(**base, d_model=d, expansion=h / d), target)
    heads = shape["heads"]
    return closest(range(1, 8 * d // heads), lambda k: ModelConfig(**base, d_model=k * heads), target)


def train_all(args: argparse.Namespace, shape: dict, data: Path, text: str, work: Path) -> list[dict]:
    vocab = len(set(text))
    reference = ModelConfig(vocab, "mingru", shape["layers"], shape["d_model"], shape["expansion"], shape["mlp_ratio"])
    target = params(reference)
    rows = []
    for arch in args.archs:
        model = matched_config(arch, shape, vocab, target)
        n_params = params(model)
        if abs(n_params - target) > args.tolerance * target:
            raise SystemExit(f"compare.py: {arch} cannot match {target:,} params within {args.tolerance:.0%}")
        config = TrainConfig(
            arch=arch,
            n_layers=model.n_layers,
            d_model=model.d_model,
            expansion=model.expansion,
            mlp_ratio=model.mlp_ratio,
            n_heads=model.n_heads,
            window=args.window,
            seq_len=shape["seq_len"],
            batch_size=shape["batch_size"],
            steps=args.steps or 1_000_000,  # without --steps the time budget ends the run
            lr=shape["lr"],
            warmup=50,
            eval_every=1_000_000_000,  # evaluated once, at the end (compare scores the whole held-out text)
            eval_batches=4,
            seed=args.seed,
            device=args.device,
            max_time=None if args.steps else args.budget,
            threads=args.threads,
        )
        res = train(config, data, work / arch, quiet=True)
        row = {
            "arch": arch,
            "d_model": model.d_model,
            "d_hidden": model.d_hidden if follows_hidden(arch) else None,  # attention mixers have none
            "n_heads": model.n_heads,
            "window": config.attention_window,
            "params": n_params,
            "params_vs_reference": round(n_params / target, 4),
            "steps": res.steps_done,
            "tokens_seen": res.tokens_seen,
            "train_time_s": round(res.train_time_s, 1),
            "tokens_per_s": round(res.tokens_seen / res.train_time_s),
        }
        rows.append(row)
        print(
            f"{arch:11s} d_model {model.d_model:4d} d_hidden {row['d_hidden'] or '-':>4} params {n_params:,} "
            f"({row['params_vs_reference']:.3f}x): {res.steps_done} steps in {row['train_time_s']} s",
            flush=True,
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=SHAKESPEARE, help="Text file; default: tiny-shakespeare (cached download).")
    ap.add_argument("--size", choices=sorted(SIZES), default="0.5m", help="Parameter count of every model.")
    ap.add_argument("--budget", type=float, default=None, help="Training seconds per mixer (default by --size).")
    ap.add_argument("--steps", type=int, default=None, help="Equal step budget instead of a time budget.")
    ap.add_argument("--archs", nargs="+", default=list(MIXER_NAMES), choices=MIXER_NAMES)
    ap.add_argument("--window", type=int, default=None, help="Transformer window (default: 128, or seq_len).")
    ap.add_argument("--variant", default="int8-dynamic", help="Precision variant compared with fp32.")
    ap.add_argument("--threads", type=int, default=1, help="Torch and ONNX Runtime threads.")
    ap.add_argument("--device", default="cpu", help="Training device (cpu, cuda).")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--tolerance", type=float, default=0.05, help="Largest parameter mismatch allowed.")
    ap.add_argument("--quick", action="store_true", help="Smoke run: tiny models, 4 s each, short measurements.")
    ap.add_argument("--write", action="store_true", help="Write into benchmarks/results/compare_<size>/.")
    ap.add_argument("--out", type=Path, default=None, help="Report folder (default: see --write).")
    args = ap.parse_args()
    shape = QUICK if args.quick else SIZES[args.size]
    if args.budget is None:
        args.budget = 4.0 if args.quick else BUDGETS[args.size]
    if args.write and args.quick:
        raise SystemExit("compare.py: --quick results are not written over benchmarks/results; pass --out DIR")
    out = args.out or (
        RESULTS / f"compare_{args.size}" if args.write else Path(tempfile.mkdtemp(prefix="rnnedge-cmp-"))
    )
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        data = resolve_data(args.data)
        text = read_text(data)
        with tempfile.TemporaryDirectory(prefix="rnnedge-compare-ckpt-") as tmp:
            rows = train_all(args, shape, data, text, Path(tmp))
            cmd = [sys.executable, "-m", "rnnedge.cli", "compare", *(str(Path(tmp) / a) for a in args.archs)]
            cmd += ["--data", str(data), "--out", str(out), "--variant", args.variant, "--threads", str(args.threads)]
            cmd += QUICK_COMPARE if args.quick else []
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
            }
            if subprocess.run(cmd, env=env, check=False).returncode != 0:
                raise SystemExit("compare.py: rnnedge compare failed (its error is above)")
    except RnnedgeError as exc:
        raise SystemExit(f"compare.py: error: {exc}") from None
    record = {
        "benchmark": "compare",
        "size": "quick" if args.quick else args.size,
        "data": data_record(text, args.data, data),
        "budget": {"steps": args.steps} if args.steps else {"seconds_per_arch": args.budget},
        "shape": shape,
        "threads": args.threads,
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "total_seconds": round(time.perf_counter() - started, 1),
        "training": rows,
    }
    write_json(out / "training.json", record)
    print(f"wrote {out}/compare.html and training.json ({record['total_seconds']:.0f} s in all)")


if __name__ == "__main__":
    main()
