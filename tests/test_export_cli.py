"""`rnnedge export` / `rnnedge build-engine` on the command line: the happy path and every bad input."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from tests.test_export import make_checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("cli") / "lstm", "lstm", seed=1)


def _fails(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnedge: error: "), result.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_export_cli_writes_graphs_and_summary(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = runner.invoke(app, ["export", str(ckpt), "--out", str(out), "--max-seq-len", "512"])
    assert result.exit_code == 0, result.output
    assert "parallel" in result.stdout and "step" in result.stdout and "TensorRT static check" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["max_seq_len"] == 512 and manifest["verification"]["passed"]


def _bad_checkpoints(ckpt: Path, root: Path) -> dict[str, tuple[Path, str]]:
    corrupt = root / "corrupt"
    corrupt.mkdir()
    for f in ckpt.iterdir():
        (corrupt / f.name).write_bytes(f.read_bytes())
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    badarch = root / "badarch"
    badarch.mkdir()
    for f in ckpt.iterdir():
        (badarch / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((badarch / "config.json").read_text())
    cfg["model"]["arch"] = "mamba"
    (badarch / "config.json").write_text(json.dumps(cfg))
    garbage = root / "garbage"
    garbage.mkdir()
    (garbage / "config.json").write_text("{not json")
    return {
        "missing": (root / "nope", "checkpoint folder not found"),
        "corrupt": (corrupt, "corrupt or replaced"),
        "unknown arch": (badarch, "unknown arch 'mamba'"),
        "garbage config": (garbage, "not valid JSON"),
    }


def test_export_cli_bad_checkpoints(ckpt: Path, tmp_path: Path) -> None:
    for case, (path, needle) in _bad_checkpoints(ckpt, tmp_path).items():
        out = tmp_path / f"out_{case.replace(' ', '_')}"
        _fails(["export", str(path), "--out", str(out)], needle)
        assert not out.exists(), case


def test_export_cli_bad_options(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    _fails(["export", str(ckpt), "--out", str(out), "--opset", "16"], "LayerNormalization needs opset >= 17")
    _fails(["export", str(ckpt), "--out", str(out), "--opset", "30"], "supported opsets: 17-20")
    _fails(["export", str(ckpt), "--out", str(out), "--max-seq-len", "1"], "max_seq_len must be an integer >= 2")
    assert not out.exists()
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    _fails(["export", str(ckpt), "--out", str(blocker / "sub")], "cannot write to output folder")
    _fails(["export", str(ckpt), "--out", str(blocker)], "is not a folder")
    assert blocker.read_text() == "x"


def test_export_cli_default_model_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("rnnedge.assets")
    fake.default_model_path = lambda: tmp_path / "not-there"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rnnedge.assets", fake)
    _fails(["export", "default", "--out", str(tmp_path / "o")], "bundled default model is missing")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_build_engine_without_tensorrt(ckpt: Path, tmp_path: Path) -> None:
    _fails(["build-engine", str(tmp_path)], "parallel.onnx not found")
    out = tmp_path / "exp"
    from rnnedge.exporter import export_model

    export_model(ckpt, out, simplify=False, max_seq_len=64)
    _fails(["build-engine", str(out)], "tensorrt is not installed")
    _fails(["build-engine", str(out), "--variant", "int8-qdq"], "--method int8-qdq` first")
    assert not (out / "parallel.plan").exists()
