"""Issue 20, training: Ctrl-C says which step was kept and the exact command that resumes the run."""

from __future__ import annotations

import json
import shlex

from typer.testing import CliRunner

import rnnedge.training.train as train_mod
from rnnedge.cli import app

TEXT = "the cat sat on the mat. " * 120
TINY = ["--layers", "1", "--d-model", "16", "--seq-len", "16", "--batch-size", "4", "--threads", "1", "--quiet"]


def test_ctrl_c_names_the_kept_step_and_the_resume_command(tmp_path, monkeypatch):
    data, out = tmp_path / "my text.txt", tmp_path / "run"
    data.write_text(TEXT, encoding="utf-8")
    real = train_mod.lr_at

    def interrupt_at_7(config, step, frac=0.0):
        if step == 7:
            raise KeyboardInterrupt
        return real(config, step, frac)

    monkeypatch.setattr(train_mod, "lr_at", interrupt_at_7)
    args = ["train", "--data", str(data), "--out", str(out), *TINY, "--steps", "12", "--eval-every", "3"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 130, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert "after step 7 of 12" in lines[0] and "checkpoint of step 6" in lines[0], lines[0]
    assert json.loads((out / "config.json").read_text())["training"]["steps_done"] == 6
    command = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert command[0] == "rnnedge"
    monkeypatch.setattr(train_mod, "lr_at", real)
    resumed = CliRunner().invoke(app, [*command[1:], "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "config.json").read_text())["training"]["steps_done"] == 12


def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_kept(tmp_path, monkeypatch):
    data, out = tmp_path / "text.txt", tmp_path / "run"
    data.write_text(TEXT, encoding="utf-8")
    real = train_mod.lr_at

    def interrupt_at_1(config, step, frac=0.0):
        if step == 1:
            raise KeyboardInterrupt
        return real(config, step, frac)

    monkeypatch.setattr(train_mod, "lr_at", interrupt_at_1)
    res = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(out), *TINY, "--steps", "12"])
    assert res.exit_code == 130, res.output
    assert "before the first checkpoint" in res.stderr and not out.exists(), res.stderr
