"""Peak RSS of train and drift on a ~200 MB text vs a 1 MB text (issue 19: train 3.9 GB, drift 5.4 GB).

eval and `quantize --eval` score the whole text they are given by design (their cost grows with it, in
time: hours on 200 MB at one step per character), so they are not run on the big text here.

Each command runs as a child process; its peak RSS is resource.getrusage(RUSAGE_CHILDREN)
ru_maxrss (KiB on Linux) read in a fresh wrapper process, so one child's peak never hides
another's. The texts and the tiny model live in a temp folder. Writes
benchmarks/results/big_text_memory.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SMALL_SOURCE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"  # beside every checkout
BIG_BYTES = 200 * 2**20
# train holds the text as a compact id array (1 byte/char), so its bound allows the text once.
BOUND_MB = {"train": 200 + 200, "default": 200}
PEAK = (
    "import resource,subprocess,sys;"
    "rc=subprocess.call(sys.argv[1:],stdout=subprocess.DEVNULL);"
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


ENV = {**os.environ, "PYTHONPATH": str(REPO)}  # the checkout's rnnedge, not an installed one


def peak_mb(cmd: list[str]) -> tuple[int, float]:
    """Run cmd as a grandchild; return (exit code, its peak RSS in MB)."""
    out = subprocess.run([sys.executable, "-c", PEAK, *cmd], env=ENV, capture_output=True, text=True, check=True)
    rc, kib = out.stdout.split()[-2:]
    return int(rc), int(kib) / 1024


def cli(*args: str) -> list[str]:
    """A `python -m rnnedge.cli` command line."""
    return [sys.executable, "-m", "rnnedge.cli", *args]


def main() -> None:
    """Build the texts and model, measure each command on both texts, write the JSON."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from int8_cpus import env

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        small = tmp / "small.txt"
        chunk = SMALL_SOURCE.read_bytes()
        small.write_bytes(chunk)
        big = tmp / "big.txt"
        with big.open("wb") as f:
            for _ in range(BIG_BYTES // len(chunk) + 1):
                f.write(chunk)
        ckpt, export = tmp / "ckpt", tmp / "export"
        steps = ["--steps", "5", "--batch-size", "4", "--seq-len", "64", "--eval-every", "1000"]
        for setup in (
            ("train", "-d", str(small), "-o", str(ckpt), "--preset", "small", *steps),
            ("export", str(ckpt), "-o", str(export)),
            ("quantize", str(export), "--method", "int8-dynamic", "--eval", str(small)),  # drift's variant
        ):
            subprocess.run(cli(*setup), env=ENV, check=True)
        commands = {
            "train": lambda t, n: cli("train", "-d", str(t), "-o", str(tmp / f"tr{n}"), "--preset", "small", *steps),
            "drift": lambda t, n: cli(
                "drift", str(export), "--data", str(t), "--out", str(tmp / f"dr{n}"), "--steps", "256", "--streams", "2"
            ),
        }
        rows: dict[str, Any] = {}
        for name, make in commands.items():
            rc_s, small_mb = peak_mb(make(small, f"s{name}"))
            rc_b, big_mb = peak_mb(make(big, f"b{name}"))
            bound = small_mb + BOUND_MB.get(name, BOUND_MB["default"])
            rows[name] = {
                "rc_small": rc_s,
                "rc_big": rc_b,
                "peak_mb_small": round(small_mb, 1),
                "peak_mb_big": round(big_mb, 1),
                "ratio": round(big_mb / small_mb, 2),
                "bound_mb": round(bound, 1),
                "ok": rc_s == 0 and rc_b == 0 and big_mb <= bound,
            }
            print(name, rows[name], flush=True)
        _, whole_mb = peak_mb([sys.executable, "-c", f"open({str(big)!r}, encoding='utf-8').read()"])
        result = {
            "env": env(),
            "load": os.getloadavg(),
            "text_bytes": {"small": small.stat().st_size, "big": big.stat().st_size},
            "read_whole_peak_mb": round(whole_mb, 1),
            "commands": rows,
            "goal": "peak RSS (200 MB text) <= peak RSS (1 MB text) + 200 MB; train +400 MB (id array)",
            "goal_met": all(r["ok"] for r in rows.values()),
        }
    out = REPO / "benchmarks" / "results" / "big_text_memory.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
