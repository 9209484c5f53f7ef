"""Data-parallel training: 2 CPU processes under torchrun (gloo), rank 0 writes the checkpoint."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    pytest.importorskip("torch.distributed.run")
    text = tmp_path / "text.txt"
    text.write_text("abcdefgh ijk. " * 300, encoding="utf-8")
    out = tmp_path / "ckpt"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "rnnedge.cli", "train", "--data", str(text), "--out", str(out),
        "--layers", "1", "--d-model", "16", "--seq-len", "16", "--batch-size", "4",
        "--steps", "20", "--eval-every", "10", "--warmup", "2", "--lr", "1e-2", "--threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("saved ") == 1  # only rank 0 reports and writes
    meta = json.loads((out / "config.json").read_text())
    training = meta["training"]
    assert training["world_size"] == 2 and training["steps_done"] == 20
    assert training["tokens_seen"] == 2 * 4 * 16 * 20  # both ranks' batches count
    assert math.isfinite(meta["val_loss"]) and meta["val_loss"] < training["history"][0]["val_loss"] + 1e-9
    assert meta["val_loss"] < math.log(12)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
