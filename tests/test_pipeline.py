"""`rnnedge pipeline` end to end on a tiny model: every stage's files and numbers, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.models import ModelConfig, build_model
from rnnedge.training.checkpoint import save_checkpoint
from rnnedge.vocab import CharVocab

from .conftest import TEXT


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    vocab = CharVocab.from_text(TEXT)
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=len(vocab), arch="lstm", n_layers=1, d_model=32)).eval()
    ckpt = save_checkpoint(root / "ckpt", model, vocab, val_loss=3.0)
    data = root / "text.txt"
    data.write_text(TEXT, encoding="utf-8")
    return ckpt, data


def test_pipeline_runs_every_stage(setup: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, data = setup
    out = tmp_path / "run"
    args = ["pipeline", str(ckpt), "--out", str(out), "--data", str(data), "--drift-steps", "64"]
    result = CliRunner().invoke(app, [*args, "--streams", "2", "--tokens", "20", "--prompt", "All:", "--threads", "1"])
    assert result.exit_code == 0, result.output
    for stage in ("[1/5] export", "[2/5] precision variant", "[3/5] drift", "[4/5] generate", "Summary"):
        assert stage in result.output
    for rel in (
        "export/parallel.onnx",
        "export/step.int8-dynamic.onnx",
        "report/report.html",
        "sample.txt",
        "summary.json",
    ):
        assert (out / rel).is_file(), rel
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["loss_nats"]) == {"step", "parallel"} and summary["variant"] == "int8-dynamic"
    step = summary["loss_nats"]["step"]
    assert step["loss_variant"] == pytest.approx(step["loss_fp32"] + step["loss_delta"], abs=1e-5)
    assert summary["heldout_text"]["chars"] == len(TEXT) - int(len(TEXT) * 0.9)
    assert (out / "sample.txt").read_text().startswith("All:")
    assert len((out / "sample.txt").read_text()) == len("All:") + 20 + 1
    assert summary["step_us_per_token_p50"]["int8-dynamic"] > 0
    assert "saturates" in summary["drift_verdict"] or "grow" in summary["drift_verdict"]


def test_pipeline_bad_input_is_one_line(setup: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, _ = setup
    bad = tmp_path / "bad.txt"
    bad.write_text("Zebra ⚡ text\n" * 100, encoding="utf-8")
    result = CliRunner().invoke(app, ["pipeline", str(ckpt), "--out", str(tmp_path / "o"), "--data", str(bad)])
    assert result.exit_code == 1
    assert "rnnedge: error:" in result.output and "outside the vocabulary" in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["pipeline", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")])
    assert missing.exit_code == 1 and "rnnedge: error:" in missing.output


def test_pipeline_static_calibrates_on_text_disjoint_from_heldout(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """Issue 13 items 2 and 3: --method static (int8-qdq) runs, and calibrates on the text before the held-out part."""
    ckpt, data = setup
    out = tmp_path / "static"
    args = ["pipeline", str(ckpt), "--out", str(out), "--data", str(data), "--method", "static", "--drift-steps", "32"]
    result = CliRunner().invoke(app, [*args, "--streams", "2", "--tokens", "5", "--prompt", "All:", "--threads", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variant"] == "int8-qdq"
    heldout = (out / "data" / "heldout.txt").read_text()
    calib = (out / "data" / "calibration.txt").read_text()
    assert calib + heldout == TEXT and len(heldout) == len(TEXT) - int(len(TEXT) * 0.9)
    for g in summary["loss_nats"].values():
        assert abs(g["loss_delta"]) < 1.0
    assert (out / "export" / "step.int8-qdq.onnx").is_file()


def test_pipeline_checks_everything_before_the_first_stage(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """Issue 13 item 12: bad arguments fail before anything is exported (the folder is not even created)."""
    ckpt, data = setup
    base = ["pipeline", str(ckpt), "--data", str(data)]
    cases = [
        (["--method", "int3"], "unknown precision recipe"),
        (["--prompt", "Zebra⚡"], "outside the vocabulary"),
        (["--streams", "0"], "--streams"),
        (["--threads", "0"], "--threads"),
        (["--drift-steps", "4"], "--drift-steps"),
    ]
    for extra, message in cases:
        out = tmp_path / "never"
        result = CliRunner().invoke(app, [*base, "--out", str(out), *extra])
        assert result.exit_code == 1, (extra, result.output)
        assert message in result.output and "Traceback" not in result.output
        assert not out.exists(), extra


def test_failed_pipeline_removes_only_what_it_created(setup: tuple[Path, Path], tmp_path: Path, monkeypatch) -> None:
    """Issue 13 item 2: a stage that fails after export leaves the folder as it was (user files kept)."""
    import rnnedge.drift as drift_pkg
    from rnnedge.errors import VerificationError

    ckpt, data = setup
    out = tmp_path / "keep"
    (out / "export").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "export" / "my-notes.md").write_text("also mine")

    def broken(*args, **kwargs):
        raise VerificationError("drift stage broke on purpose")

    monkeypatch.setattr(drift_pkg, "run_drift", broken)
    args = ["pipeline", str(ckpt), "--out", str(out), "--data", str(data), "--drift-steps", "32", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--prompt", "All:"])
    assert result.exit_code == 1 and "--overwrite" in result.output  # issue 19: not rnnedge's folder
    result = CliRunner().invoke(app, [*args, "--prompt", "All:", "--overwrite"])
    assert result.exit_code == 1 and "broke on purpose" in result.output
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["export", "export/my-notes.md", "notes.txt"]
