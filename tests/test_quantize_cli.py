"""`rnnedge quantize` and `rnnedge build-engine --variant` on the command line, .ort folders, no torch."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.graphmeta import list_variants, parse_metadata
from rnnedge.quantization import quantize_export
from tests.test_quantize_support import TEXT, make_export


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    (root / "calib.txt").write_text(TEXT)
    (root / "eval.txt").write_text("\n".join(reversed(TEXT.splitlines()))[:1500])
    return {
        "mingru": make_export(root / "mingru", "mingru"),
        "ort": make_export(root / "ort", "mingru", ort_format=True),
        "calib": root / "calib.txt",
        "eval": root / "eval.txt",
    }


def fresh(exports: dict[str, Path], key: str, tmp_path: Path) -> Path:
    out = tmp_path / key
    shutil.copytree(exports[key], out)
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rnnedge.cli", *args], capture_output=True, text=True, timeout=300)


def one_line_error(res, *needles: str) -> None:
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("rnnedge: error:") and "Traceback" not in res.output, res.output
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def test_cli_success_names_the_variant_files(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    runner = CliRunner()
    ok = runner.invoke(
        app, ["quantize", str(d), "--method", "static", "--calib", str(exports["calib"]), "--per-channel"]
    )
    assert ok.exit_code == 0, ok.output
    assert "parallel.int8-qdq.onnx: QDQ" in ok.output and "step.int8-qdq.onnx: QDQ" in ok.output
    assert "manifest variants[int8-qdq] updated" in ok.output
    entry = json.loads((d / "manifest.json").read_text())["variants"]["int8-qdq"]
    assert entry["recipe"]["per_channel"] is True
    ok = runner.invoke(
        app, ["quantize", str(d), "--method", "int4-weight", "--eval", str(exports["eval"]), "--graphs", "step"]
    )
    assert ok.exit_code == 0 and "step.int4-weight.onnx: MatMulNBits" in ok.output, ok.output
    assert set(list_variants(d)) == {"fp32", "int8-qdq", "int4-weight"}


def test_cli_one_line_errors(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    runner = CliRunner()
    calib, held = str(exports["calib"]), str(exports["eval"])
    for args, needles in (
        (["quantize", str(tmp_path / "none"), "--eval", held], ("export folder not found",)),
        (["quantize", str(d)], ("pass --eval PATH",)),
        (["quantize", str(d), "--method", "static"], ("pass --eval PATH",)),
        (["quantize", str(d), "--eval", held, "--method", "bogus"], ("unknown precision recipe 'bogus'",)),
        (["quantize", str(d), "--method", "static", "--calib", calib, "--calib-steps", "-4"], ("got -4",)),
        (["quantize", str(d), "--method", "static", "--calib", calib, "--calib-steps", "0"], ("got 0",)),
        (["quantize", str(d), "--eval", held, "--calib-steps", "64"], ("int8-dynamic has no option calib_steps",)),
        (["quantize", str(d), "--method", "fp16", "--eval", held, "--per-channel"], ("no option per_channel",)),
        (["quantize", str(d), "--method", "int4-weight", "--eval", held, "--bits", "3"], ("bits must be 4 or 8",)),
    ):
        one_line_error(runner.invoke(app, args), *needles)
    assert set(list_variants(d)) == {"fp32"}


def test_quantizer_chatter_stays_off_the_terminal(exports, tmp_path):
    # ONNX Runtime's tools log ("Please consider to run pre-processing", "skip to quantize ..."), print
    # and warn; none of it may land between rnnedge's own lines.
    d = fresh(exports, "mingru", tmp_path)
    ours = re.compile(
        r"^[a-z0-9-]+: held-out text|^calibrating |^(parallel|step)(: |\.[a-z0-9-]+\.onnx: )|^wrote "
        r"|^  verified on [a-z0-9-]+: |^(  on|step on) cpu-[a-z0-9-]+"
    )
    for method in ("int8-dynamic", "int4-weight", "int8-qdq"):
        res = run_cli("quantize", str(d), "--method", method, "--calib", str(exports["calib"]))
        assert res.returncode == 0, res.stderr[-2000:]
        lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
        assert lines and all(ours.match(ln) for ln in lines), [ln for ln in lines if not ours.match(ln)][:5]


def test_ort_folder_gets_variant_ort_files_and_a_wider_operator_config(exports, tmp_path):
    d = fresh(exports, "ort", tmp_path)
    fp32_config = (d / "required_operators.config").read_text()
    res = quantize_export(d, eval_text=exports["eval"])
    names = sorted(p.name for p in res.extra_files)
    assert names == ["parallel.int8-dynamic.ort", "required_operators.config", "step.int8-dynamic.ort"]
    config = (d / "required_operators.config").read_text()
    assert "/tmp" not in config and "# - step.ort" in config and "# - step.int8-dynamic.ort" in config
    fp32_ops = {ln for ln in fp32_config.splitlines() if not ln.startswith("#")}
    assert {ln for ln in config.splitlines() if not ln.startswith("#")} != fp32_ops  # the int8 ops are in
    entry = json.loads((d / "manifest.json").read_text())["variants"]["int8-dynamic"]["ort_format"]
    assert all(v <= 1e-4 for v in entry["max_abs_diff_vs_onnx"].values())
    assert "parallel.ort" in entry["config_covers"] and "step.int8-dynamic.ort" in entry["config_covers"]
    sess = ort.InferenceSession(str(d / "step.int8-dynamic.ort"), providers=["CPUExecutionProvider"])
    info = parse_metadata(sess.get_modelmeta().custom_metadata_map, "step.int8-dynamic.ort")
    assert info.variant == "int8-dynamic"
    plain = fresh(exports, "mingru", tmp_path)  # a folder without .ort files gets none
    assert quantize_export(plain, eval_text=exports["eval"]).extra_files == ()
    assert not list(plain.glob("*.ort"))


def test_build_engine_takes_a_variant(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    quantize_export(d, eval_text=exports["eval"])
    runner = CliRunner()
    one_line_error(runner.invoke(app, ["build-engine", str(d), "--variant", "int8-qdq"]), "--method int8-qdq` first")
    one_line_error(runner.invoke(app, ["build-engine", str(d), "--variant", "Bad_Name"]), "variant name 'Bad_Name'")
    one_line_error(runner.invoke(app, ["build-engine", str(d), "--variant", "int8-dynamic"]), "TensorRT cannot parse")
    old_flag = run_cli("build-engine", str(d), "--int8")  # rnnedge 0.1's boolean is gone
    assert old_flag.returncode == 1 and "No such option" in old_flag.stderr and len(old_flag.stderr.splitlines()) == 1
    if importlib.util.find_spec("tensorrt") is None:
        quantize_export(d, "int8-qdq", calib_text=exports["calib"], graphs=("parallel",))
        one_line_error(
            runner.invoke(app, ["build-engine", str(d), "--variant", "int8-qdq"]), "tensorrt is not installed"
        )
    assert not list(d.glob("*.plan"))


def test_quantizer_never_imports_torch(exports, tmp_path):
    d = fresh(exports, "ort", tmp_path)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from rnnedge.quantization import quantize_export\n"
        f"for name in ('int8-qdq', 'fp16', 'int4-weight'):\n"
        f"    r = quantize_export({str(d)!r}, name, calib_text={str(exports['calib'])!r})\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok', sorted(r.paths), len(r.extra_files))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok ['parallel', 'step'] 3" in out.stdout
