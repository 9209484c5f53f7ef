"""`rnnedge eval` on export folders (precision variants, providers) and its up-front option checks."""

# ruff: noqa: F811  (the `exports` fixture is imported from tests.test_runtime_graphs)
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from rnnedge.cli import app
from tests.conftest import TEXT
from tests.test_runtime_graphs import VARIANT, exports  # noqa: F401

runner = CliRunner()


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT[:400])
    return str(path)


def test_eval_export_and_its_variants(exports, data) -> None:
    export = str(exports["mingru"] / "export")
    fp32 = runner.invoke(app, ["eval", export, "--data", data, "--json"])
    assert fp32.exit_code == 0, fp32.output
    ref = json.loads(fp32.stdout)
    assert ref["kind"] == "export" and ref["variant"] == "fp32" and ref["graph"] == "parallel.onnx"
    step_variant = runner.invoke(app, ["eval", export, "--data", data, "--variant", VARIANT])
    assert step_variant.exit_code == 0, step_variant.output
    assert f"(export, step.{VARIANT}.onnx): loss" in step_variant.stdout
    on_file = runner.invoke(app, ["eval", export + "/parallel.onnx", "--data", data, "--json"])
    assert on_file.exit_code == 0 and json.loads(on_file.stdout)["loss_nats"] == pytest.approx(ref["loss_nats"])


@pytest.mark.parametrize(
    ("target", "args", "message"),
    [
        ("ckpt", ["--device", "tpu"], "--device must be cpu, cuda or cuda:N, got 'tpu'"),
        ("ckpt", ["--variant", VARIANT], "--variant applies to export folders only"),
        ("ckpt", ["--provider", "cuda"], "--provider applies to exports"),
        ("export", ["--device", "cuda"], "for an export use --provider cuda"),
        ("export", ["--provider", "tpu"], "unknown provider 'tpu'"),
        ("export", ["--variant", "fp16"], "no parallel.fp16.onnx; its parallel variants: fp32"),
        ("export", ["--variant", "FP16"], "lower-case"),
    ],
)
def test_eval_bad_options_are_one_line(exports, data, target, args, message) -> None:
    res = runner.invoke(app, ["eval", str(exports["mingru"] / target), "--data", data, *args])
    assert res.exit_code == 1, res.output
    assert message in res.stderr and res.stderr.count("\n") == 1 and "Traceback" not in res.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_eval_device_cuda_without_cuda_is_one_line(exports, data) -> None:
    """Issue 13 item 10: `eval --device cuda` on a machine without CUDA."""
    res = runner.invoke(app, ["eval", str(exports["mingru"] / "ckpt"), "--data", data, "--device", "cuda"])
    assert res.exit_code == 1 and "no CUDA device" in res.stderr and res.stderr.count("\n") == 1
