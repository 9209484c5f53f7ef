"""Issue 20: `rnnedge inspect DIR` (inputs, states, variants, metadata; no torch) and `eval --json-out`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.quantization import quantize_export
from tests.test_quantize_support import TEXT, make_export

runner = CliRunner()


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inspect")
    text = root / "eval.txt"
    text.write_text(TEXT[:1500])
    d = make_export(root / "lstm", "lstm", train_steps=2)
    quantize_export(d, "int8-dynamic", eval_text=text, graphs=("step",))
    return d, text


def test_inspect_prints_inputs_states_variants_and_metadata(export):
    d, _ = export
    res = runner.invoke(app, ["inspect", str(d)])
    assert res.exit_code == 0, res.output
    out = res.output
    for needle in (
        "lstm",
        "input_ids",
        "state_in.0.h",
        "state_in.1.c",
        "state_out.1.c",
        "logits",
        "int8-dynamic",
        "step.int8-dynamic.onnx",
        "parallel.onnx",
        "B/stream",
        "exact up to T = 128",
        "kept float: none",
    ):
        assert needle in out, (needle, out)  # fmt: skip
    report = json.loads(runner.invoke(app, ["inspect", str(d), "--json"]).output)
    assert set(report["variants"]) == {"fp32", "int8-dynamic"}
    step = report["variants"]["fp32"]["step"]
    assert [s["name"] for s in step["states"]] == ["0.h", "0.c", "1.h", "1.c"]
    assert step["state_bytes_per_stream"] == sum(s["bytes"] for s in step["states"]) > 0
    assert report["variants"]["int8-dynamic"]["step"]["quantization"]["loss_delta"] is not None
    one = json.loads(runner.invoke(app, ["inspect", str(d / "step.int8-dynamic.onnx"), "--json"]).output)
    assert list(one["variants"]) == ["int8-dynamic"]


def test_inspect_errors_are_one_line(tmp_path):
    for target in (tmp_path, tmp_path / "missing"):
        res = runner.invoke(app, ["inspect", str(target)])
        assert res.exit_code == 1 and res.stderr.startswith("rnnedge: error:"), res.output
        assert len(res.stderr.strip().splitlines()) == 1


def test_inspect_needs_no_torch(export):
    d, _ = export
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
        "from rnnedge.runtime.inspect import format_inspect, inspect_export\n"
        f"print(format_inspect(inspect_export({str(d)!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "state_in.0.c" in out.stdout, out.stderr[-2000:]


def test_eval_json_out_writes_what_json_prints(export, tmp_path):
    d, text = export
    target = tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", str(d), "--data", str(text), "--json", "--json-out", str(target)])
    assert res.exit_code == 0, res.output
    assert json.loads(target.read_text()) == json.loads(res.stdout)
    (tmp_path / "file").write_text("a file, not a folder")
    bad = runner.invoke(app, ["eval", str(d), "--data", str(text), "--json-out", str(tmp_path / "file" / "x.json")])
    assert bad.exit_code == 1 and "--json-out" in bad.stderr, bad.output
