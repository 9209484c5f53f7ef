"""Ctrl-C (SIGINT) and SIGTERM sent to `python -m rnnedge.cli ...` while it runs or writes a file.

Mid-write: tests/faults/slow_cli.py stops the command's first write half-way and says so (a marker
file), so the signal lands inside a half-written file every time. Mid-run: the signal is sent once the
command has printed its first output. Either way: exit 130, one stderr line, and every folder as it was
(an interrupted re-run keeps the earlier output; a new output folder is not left behind).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rnnedge.training.train import train
from tests.conftest import TEXT
from tests.faults.conftest import TINY
from tests.faults.support import COMMANDS, PIPELINE, Inputs, cli, snapshot

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 120  # the longest a command may take to reach the point the signal is meant for


def _drift_again(p: Inputs, world: dict[str, Path]) -> list[Any]:
    """drift into a folder holding an earlier report and a file of the user's."""
    shutil.copytree(world["report"], p.out)
    (p.out / "notes.txt").write_text("the user's own notes")
    return COMMANDS["drift"](p)


def _drift_long(p: Inputs, world: dict[str, Path]) -> list[Any]:
    long_text = p.text.with_name("long.txt")
    long_text.write_text(TEXT * 100, encoding="utf-8")
    return ["drift", p.export, "--data", long_text, "--out", p.out, "--steps", 300_000, "--streams", 1]


# {case: (signal, args, how: "write" = mid-write, else the stdout text that says the command is running)}
Args = Callable[[Inputs, dict[str, Path]], list[Any]]
CASES: dict[str, tuple[signal.Signals, Args, str]] = {
    "train-in-place-sigterm-mid-write": (
        signal.SIGTERM,
        lambda p, w: COMMANDS["train"](replace(p, out=p.ckpt)),
        "write",
    ),
    "export-again-sigint-mid-write": (
        signal.SIGINT,
        lambda p, w: COMMANDS["export"](replace(p, out=p.export)),
        "write",
    ),
    "quantize-sigterm-mid-write": (signal.SIGTERM, lambda p, w: COMMANDS["quantize"](p), "write"),
    "drift-again-sigint-mid-write": (signal.SIGINT, _drift_again, "write"),
    "pipeline-sigterm-mid-write": (signal.SIGTERM, lambda p, w: COMMANDS["pipeline"](p), "write"),
    "drift-sigterm-mid-run": (signal.SIGTERM, _drift_long, "drift export"),
    "generate-sigint-mid-run": (
        signal.SIGINT,
        lambda p, w: ["generate", p.export, "--tokens", 10**8, "--prompt", "All:"],
        "All:",
    ),
}


def _wait_for(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        assert proc.poll() is None, f"the command ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {WAIT_S} s"
        time.sleep(0.02)


def _signal_once_ready(
    argv: list[str], sig: signal.Signals, ready: Callable[[], bool], what: str, stdout: Path, stderr: Path
) -> tuple[int, list[str]]:
    """Run `argv` (output to `stdout`/`stderr`), send `sig` once `ready()`: (exit code, stderr's lines)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=err)
        try:
            _wait_for(ready, proc, what)
            proc.send_signal(sig)
            code = proc.wait(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    return code, [ln for ln in stderr.read_text().splitlines() if ln.strip()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_interrupted_run_leaves_every_folder_as_it_was(
    case: str, inputs: Inputs, world: dict[str, Path], tmp_path: Path
) -> None:
    sig, args, how = CASES[case]
    command = [str(a) for a in args(inputs, world)]
    work, signals = inputs.ckpt.parent, tmp_path / "signals"
    signals.mkdir()
    marker, stdout, stderr = signals / "marker", signals / "stdout", signals / "stderr"
    before = snapshot(work)
    if how == "write":
        argv = [sys.executable, "-m", "tests.faults.slow_cli", str(marker), str(work), *command]
    else:
        argv = [sys.executable, "-m", "rnnedge.cli", *command]
    if how == "write":
        ready, what = marker.exists, "half-written file"
    else:
        ready, what = (lambda: how in stdout.read_text(errors="replace")), f"output {how!r}"
    code, lines = _signal_once_ready(argv, sig, ready, what, stdout, stderr)
    assert code == 130, (code, lines)
    if case.startswith("train"):  # training also says which step it kept and how to resume (issue 20)
        assert len(lines) == 1 and lines[0].startswith("rnnedge: interrupted; no partial file was written; "), lines
        assert f"resume with: rnnedge train --resume {inputs.ckpt}" in lines[0], lines
    else:
        assert lines == ["rnnedge: interrupted; no partial file was written"], lines
    if how == "write":
        assert Path(marker.read_text()).parent.is_relative_to(work)  # the signal came inside a file under work/
    assert snapshot(work) == before, "an interrupted run changed the folders"


def test_sigterm_in_the_drift_stage_of_a_pipeline_re_run_with_another_model_keeps_the_old_result(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """The issue's case: a pipeline re-run with another checkpoint, SIGTERM once the drift stage has begun
    (export and precision variant already staged) -> exit 130, and export/, report/, sample.txt and
    summary.json all still the first run's (the stages write into a staging folder committed at the end)."""
    text = tmp_path / "long.txt"
    text.write_text(TEXT * 100, encoding="utf-8")  # a held-out part long enough for drift to take a while
    out, other = tmp_path / "run", tmp_path / "other"
    first = cli("pipeline", world["ckpt"], "--out", out, "--data", text, *PIPELINE)
    assert first.exit_code == 0, first.output
    ckpt_b = train(replace(TINY, seed=7), world["text"], other, quiet=True).out_dir
    before = snapshot(out)
    args = ["pipeline", ckpt_b, "--out", out, "--data", text, *PIPELINE]
    args[args.index("--drift-steps") + 1] = "300000"  # clamped to the held-out text: tens of thousands
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    argv = [sys.executable, "-m", "rnnedge.cli", *map(str, args)]
    drifting = lambda: "] drift: fp32 vs" in stdout.read_text(errors="replace")  # noqa: E731
    code, lines = _signal_once_ready(argv, signal.SIGTERM, drifting, "the drift stage", stdout, stderr)
    assert code == 130, (code, lines, stdout.read_text())
    assert lines == ["rnnedge: interrupted; no partial file was written"], lines
    assert "generate" not in stdout.read_text().split("] drift: fp32 vs")[-1], "the signal came after drift"
    assert snapshot(out) == before, "an interrupted re-run changed the pipeline's folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.txt", "other", "run", "stderr", "stdout"]
