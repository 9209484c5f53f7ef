"""The litert target: `export --target litert` (onnx2tf on a copy of the mobile graph, in the converter's own
Python) writes a built-ins-only .tflite + sidecar that LiteRT runs like ORT runs the ONNX graph; its
full-integer int8 variant computes with integer kernels; `--provider litert` runs both.

The conversion tests need the runtime (`pip install 'rnnedge[litert]'`) and a converter (`rnnedge targets
setup litert` or RNNEDGE_LITERT_PYTHON); without them they skip with the reason. The rest always run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.errors import DependencyError, GraphError
from rnnedge.exporter import export_model
from rnnedge.exporter import litert as lx
from rnnedge.targets import litert as rt
from rnnedge.targets import target_spec
from tests.test_export import VOCAB
from tests.test_mobile import make_checkpoint

RUNTIME = rt._probe()
CONVERTER = rt.converter_python()
needs_litert = pytest.mark.skipif(
    not RUNTIME.ok or CONVERTER is None,
    reason=RUNTIME.reason if not RUNTIME.ok else f"no LiteRT converter: {rt.CONVERTER_HINT}",
)
TEXT = ("abcd efg hijk lmn opqrs\n" * 200).replace(" ", "")


def test_probe_names_the_missing_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt, "runtime_version", lambda: None)
    why = rt._probe()
    assert not why.ok and "ai-edge-litert" in why.reason and "rnnedge[litert]" in why.reason
    assert target_spec("litert").folder == "litert" and target_spec("litert").is_provider


def test_converter_python_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(rt.PYTHON_ENV, "/opt/some/python")
    assert rt.converter_python() == "/opt/some/python"
    monkeypatch.delenv(rt.PYTHON_ENV)
    monkeypatch.setenv("RNNEDGE_CACHE", str(tmp_path))
    monkeypatch.setattr(rt.importlib.util, "find_spec", lambda name: None)
    python = rt.setup_python()
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert rt.converter_python() is None  # a venv without the stamp is half-built
    (tmp_path / "litert" / "ready.json").write_text("{}")
    assert rt.converter_python() == str(python)


def test_export_without_converter_is_one_error_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(rt, "converter_python", lambda: None)
    ckpt = make_checkpoint(tmp_path / "ckpt", "mingru")
    result = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(tmp_path / "out"), "--target", "litert"])
    assert result.exit_code == 1
    assert result.output.startswith("rnnedge: error:") and "targets setup litert" in result.output
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_sidecar_is_required(tmp_path: Path) -> None:
    (tmp_path / "step.tflite").write_bytes(b"\0" * 16)
    with pytest.raises(GraphError, match=r"no sidecar step\.json"):
        rt.read_sidecar(tmp_path / "step.tflite")
    with pytest.raises(GraphError, match="not serialized bytes"):
        rt.tflite_path(b"onnx")
    with pytest.raises(DependencyError if CONVERTER is None else GraphError):
        lx.run_converter(tmp_path / "missing.onnx", tmp_path / "out")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("litert")
    ckpt = make_checkpoint(root / "ckpt", "mingru", seed=2)
    export_model(ckpt, root / "out", max_seq_len=64, target="litert")
    return root / "out"


@needs_litert
def test_export_writes_builtins_only_tflite_and_sidecar(export: Path) -> None:
    folder = export / "litert"
    car = json.loads((folder / "step.json").read_text())
    assert not [op for op in car["ops"] if op.startswith(("FLEX", "CUSTOM"))]
    assert car["ids_dtype"] == "int64" and car["vocab"] == "abcdefghijklmnopqrs\n"
    assert all(s["shape"][0] == 1 for s in car["states"])  # the fixed graph's true shape
    assert sorted(a["name"] for a in car["inputs"]) == sorted(["input_ids", *(s["input"] for s in car["states"])])
    assert all(c["passed"] for c in car["verification"]) and car["verification"][-1]["name"] == "litert_vs_ort"
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["litert"]["tflite"]["sha256"] == car["sha256"]


@needs_litert
def test_provider_litert_eval_matches_ort(export: Path, tmp_path: Path) -> None:
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    losses = {}
    for provider in ("cpu", "litert"):
        result = CliRunner().invoke(app, ["eval", str(export / "litert"), "--data", str(data), "--provider", provider])
        assert result.exit_code == 0, result.output
        losses[provider] = float(result.output.split("loss ")[1].split()[0])
    assert abs(losses["cpu"] - losses["litert"]) <= 1e-4


@needs_litert
def test_int8_variant_has_integer_kernels_and_small_drift(export: Path) -> None:
    from rnnedge.exporter.litert_int8 import VARIANT, integer_kernels, quantize_litert

    car = quantize_litert(export, TEXT, calib_chars=300, held_out_chars=500)
    assert integer_kernels(car["ops"]) == [] and any(op.startswith("FULLY_CONNECTED(int8") for op in car["ops"])
    assert car["drift"]["top1_agreement"] >= 0.9 and abs(car["drift"]["delta_nll"]) < 0.05
    session = rt._open(export / "litert" / f"step.{VARIANT}.onnx", threads=1)
    feed = {a.name: np.zeros([int(d) for d in a.shape], np.float32) for a in session.get_inputs()}
    feed["input_ids"] = np.array([3], np.int32)
    logits = session.run(["logits"], feed)[0]
    assert logits.shape == (1, len(VOCAB)) and np.isfinite(logits).all()
    assert session.get_modelmeta().custom_metadata_map["rnnedge.variant"] == VARIANT
