"""`rnnedge generate default`: the bundled model, exported once into the cache, streams text."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnedge.cli import app


def test_generate_default_exports_once_then_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNEDGE_CACHE", str(tmp_path))
    first = CliRunner().invoke(app, ["generate", "default", "--prompt", "ROMEO:", "--tokens", "40", "--seed", "3"])
    assert first.exit_code == 0, first.output
    assert "exporting the bundled default model once" in first.output
    exported = list(tmp_path.glob("default-export-*/step.onnx"))
    assert len(exported) == 1
    again = CliRunner().invoke(app, ["generate", "default", "--prompt", "ROMEO:", "--tokens", "40", "--seed", "3"])
    assert again.exit_code == 0 and "exporting" not in again.output
    text = again.output
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 40 + 1
    assert text in first.output  # same seed, same text


def test_generate_default_variant_points_to_the_pipeline() -> None:
    result = CliRunner().invoke(app, ["generate", "default", "--variant", "int8-dynamic"])
    assert result.exit_code == 1 and "fp32 only" in result.stderr and "rnnedge pipeline" in result.stderr
    assert result.stderr.count("\n") == 1
