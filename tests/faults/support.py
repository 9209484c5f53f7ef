"""The fault suite's shared pieces: the commands as a table, folder snapshots, and the one assertion
every refused run must pass (exit code, one stderr line, nothing changed anywhere)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from rnnedge.cli import app
from rnnedge.ownership import LEDGER

TEMP_MARKS = (".tmp", ".rnnedge-", "probe")  # what a temp file or folder of rnnedge's is called
runner = CliRunner()


@dataclass(frozen=True)
class Inputs:
    """One test's private copies of the shared inputs, and where its output goes (absent at first)."""

    ckpt: Path  # a trained checkpoint (config.json, model.safetensors, optimizer.safetensors)
    export: Path  # its export (parallel/step.onnx, int8-dynamic variants, manifest.json)
    text: Path  # the text the checkpoint was trained on
    out: Path  # a new output folder (bench writes out/b.json)


Command = Callable[[Inputs], list[Any]]
TRAIN = ["--steps", "4", "--quiet"]
EXPORT = ["--max-seq-len", "64", "--no-simplify"]
DRIFT = ["--steps", "16", "--streams", "1", "--gen-steps", "4"]
GENERATE = ["--tokens", "4", "--seed", "0"]
BENCH = ["--steps", "10", "--no-torch", "--threads", "1"]
COMPARE = [
    "--positions",
    "1",
    "--latency-samples",
    "10",
    "--lengths",
    "64",
    "--drift-steps",
    "16",
    "--drift-streams",
    "1",
]
PIPELINE = ["--drift-steps", "16", "--streams", "1", "--tokens", "4", "--prompt", "All:", "--threads", "1"]

# Every command, run the cheapest way that still does its real work on the tiny model.
COMMANDS: dict[str, Command] = {
    "train": lambda p: ["train", "--resume", p.ckpt, "--out", p.out, "--data", p.text, *TRAIN],
    "eval": lambda p: ["eval", p.ckpt, "--data", p.text],
    "eval-export": lambda p: ["eval", p.export, "--data", p.text],
    "export": lambda p: ["export", p.ckpt, "--out", p.out, *EXPORT],
    "quantize": lambda p: ["quantize", p.export, "--eval", p.text],
    "drift": lambda p: ["drift", p.export, "--data", p.text, "--out", p.out, *DRIFT],
    "generate": lambda p: ["generate", p.export, *GENERATE],
    "bench": lambda p: ["bench", p.export, *BENCH, "--json", p.out / "b.json"],
    "pipeline": lambda p: ["pipeline", p.ckpt, "--out", p.out, "--data", p.text, *PIPELINE],
    "build-engine": lambda p: ["build-engine", p.export],
    "inspect": lambda p: ["inspect", p.export],
    "compare": lambda p: ["compare", p.export, "--data", p.text, "--out", p.out, *COMPARE, "--stream-tokens", "64"],
}
CKPT_COMMANDS = ("train", "eval", "export", "pipeline")  # read a checkpoint folder


def cli(*args: Any) -> Result:
    """Run `rnnedge ARGS` in this process (typer's CliRunner; stderr kept apart from stdout)."""
    return runner.invoke(app, [str(a) for a in args])


def snapshot(*roots: Path) -> dict[str, tuple[str, int, str]]:
    """{path: (kind, size, sha256)} of everything under `roots` (the roots themselves included)."""
    found: dict[str, tuple[str, int, str]] = {}
    for root in roots:
        paths = [root, *sorted(root.rglob("*"))] if root.exists() else []
        for p in paths:
            if p.is_symlink():
                found[str(p)] = ("link", 0, str(p.readlink()))
            elif p.is_dir():
                found[str(p)] = ("dir", 0, "")
            else:
                data = p.read_bytes()
                found[str(p)] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return found


def temp_leftovers(*roots: Path) -> list[str]:
    """Names under `roots` that look like an rnnedge temp file or folder."""
    found = [p for r in roots if r.exists() for p in r.rglob("*") if any(m in p.name for m in TEMP_MARKS)]
    return [str(p) for p in found if p.name != LEDGER]  # the ledger is rnnedge's record, not a temp file


def error_line(result: Result, code: int = 1) -> str:
    """The one stderr line of a refused run (exit `code`, no traceback, nothing else on stderr)."""
    shown = f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {result.exception!r}\n{shown}"
    )
    assert result.exit_code == code, shown
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rnnedge: "), shown
    assert "Traceback" not in result.output, shown
    return lines[0]


def assert_refused(result: Result, *needles: str, code: int = 1) -> str:
    """Exit `code` with one line `rnnedge: error: ...` holding every needle (case-insensitive)."""
    line = error_line(result, code)
    assert line.startswith("rnnedge: error: "), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in: {line}"
    return line


def copy_inputs(world: dict[str, Path], root: Path) -> Inputs:
    """Private copies of the session's checkpoint and export under `root`, plus a new output path."""
    ckpt = shutil.copytree(world["ckpt"], root / "ckpt")
    export = shutil.copytree(world["export"], root / "export")
    text = shutil.copy(world["text"], root / "text.txt")
    return Inputs(Path(ckpt), Path(export), Path(text), root / "out")


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    """Replace a JSON file with `change(its object)` (what `change` returns, or the object it edited)."""
    obj = json.loads(path.read_text(encoding="utf-8"))
    new = change(obj)
    path.write_text(json.dumps(obj if new is None else new), encoding="utf-8")


ROOT = Path(__file__).resolve().parents[2]
MEMORY_CAP = 6 << 30  # address-space cap of every subprocess run: no case may allocate GBs


def _cap_memory(limit: int) -> Callable[[], None]:
    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return cap


def rnnedge_subprocess(
    *args: Any, kill_at: int | None = None, syscall: str = "rename", timeout: float = 120, memory: int = MEMORY_CAP
) -> subprocess.CompletedProcess[str]:
    """`rnnedge ARGS` in a subprocess under an address-space cap of `memory` bytes (for cases that could
    read or allocate without limit); with `kill_at`, SIGKILLed at the kill_at-th `syscall` by strace's
    fault injection."""
    cmd = [sys.executable, "-m", "rnnedge.cli", *map(str, args)]
    if kill_at is not None:
        inject = f"inject={syscall}:signal=SIGKILL:when={kill_at}"
        cmd = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}", "-e", inject, *cmd]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, preexec_fn=_cap_memory(memory))


def assert_refused_subprocess(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A subprocess run ended with exit 1 and one `rnnedge: error:` line holding every needle."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("rnnedge: error: "), result.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in: {lines[0]}"
    return lines[0]
