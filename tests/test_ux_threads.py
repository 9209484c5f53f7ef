"""Issue 20 items 6 and 7: every computing command takes --threads with a small-machine default; the
pipeline's training stage takes --preset and --threads and says up front how long it will take."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

import rnnedge.threads as threads_mod
from rnnedge.cli import app
from rnnedge.errors import ConfigError
from rnnedge.pipeline import PipelineConfig
from rnnedge.threads import default_threads, resolve_threads
from tests.test_quantize_support import TEXT, make_export

COMPUTING = ("train", "eval", "quantize", "drift", "compare", "bench", "generate", "pipeline")
runner = CliRunner()


def _options(command: str) -> set[str]:
    group = typer.main.get_command(app)
    sub = group.get_command(typer.Context(group, info_name="rnnedge"), command)  # type: ignore[attr-defined]
    return {opt for p in sub.params for opt in p.opts}


@pytest.mark.parametrize("command", COMPUTING)
def test_every_computing_command_takes_threads(command):
    assert "--threads" in _options(command)


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (64, 4)])
def test_default_is_half_the_cpus_at_most_4(monkeypatch, cpus, expected):
    monkeypatch.setattr(threads_mod, "usable_cpus", lambda: cpus)
    assert default_threads() == expected == resolve_threads(None)
    assert resolve_threads(3) == 3
    for bad in (0, -1, True):
        with pytest.raises(ConfigError, match="--threads"):
            resolve_threads(bad)


def test_eval_uses_the_default_and_the_option(tmp_path, monkeypatch):
    monkeypatch.setattr(threads_mod, "usable_cpus", lambda: 6)  # default 3
    text = tmp_path / "t.txt"
    text.write_text(TEXT[:800])
    d = make_export(tmp_path / "m", "mingru", train_steps=1)
    base = ["eval", str(d), "--data", str(text), "--json"]
    assert json.loads(runner.invoke(app, base).stdout)["threads"] == 3
    assert json.loads(runner.invoke(app, [*base, "--threads", "1"]).stdout)["threads"] == 1
    bad = runner.invoke(app, [*base, "--threads", "0"])
    assert bad.exit_code == 1 and "--threads" in bad.stderr


def test_pipeline_preset_and_threads_reach_the_training_stage():
    from rnnedge.pipeline.run import train_config

    tc = train_config(PipelineConfig(out="x", data="d.txt", preset="small", threads=3, train_steps=7))
    assert (tc.n_layers, tc.d_model, tc.seq_len, tc.batch_size, tc.threads, tc.steps) == (3, 128, 128, 32, 3, 7)
    with pytest.raises(ConfigError, match="--preset"):
        PipelineConfig(out="x", data="d.txt", preset="huge")
    assert PipelineConfig(out="x").threads == default_threads()


def test_pipeline_says_how_long_training_takes_before_it_starts(tmp_path, monkeypatch):
    import rnnedge.training.train as train_mod

    seen = []

    def stop(*args, **kwargs):  # the estimate must come before the training stage starts
        seen.append("train")
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "train", stop)
    data = tmp_path / "d.txt"
    data.write_text(TEXT)
    res = runner.invoke(
        app, ["pipeline", "--data", str(data), "--out", str(tmp_path / "o"), "--train-steps", "40", "--threads", "1"]
    )
    assert res.exit_code == 130 and seen == ["train"], res.output
    line = next(ln for ln in res.output.splitlines() if "estimate:" in ln)
    assert "training 40 steps of the mingru model" in line and "batch 32 x 256" in line and "1 thread" in line, line
    assert "tokens/s, measured" in line
    assert line.index("estimate:") < res.output.index("[1/6] train")
