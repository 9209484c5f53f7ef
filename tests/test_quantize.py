"""rnnedge quantize: int8 graphs that keep the fp32 signature, float state, and a checked loss delta."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.errors import GraphError, RnnedgeError, UnknownCharacterError, VerificationError
from rnnedge.graphmeta import INT8_FILES, parse_metadata
from rnnedge.quantization import quantize_export
from rnnedge.quantization.calibrate import step_feeds
from rnnedge.quantization.q_run import graph_info, load_proto
from tests.test_quantize_support import TEXT, make_export


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    (root / "calib.txt").write_text(TEXT)
    (root / "eval.txt").write_text("\n".join(reversed(TEXT.splitlines()))[:1500])
    return {
        "mingru": make_export(root / "mingru", "mingru"),
        "lstm": make_export(root / "lstm", "lstm"),
        "lstm_outlier": make_export(root / "lstm_outlier", "lstm", train_steps=60, head_outlier=300.0),
        "calib": root / "calib.txt",
        "eval": root / "eval.txt",
    }


def fresh(exports: dict[str, Path], arch: str, tmp_path: Path) -> Path:
    out = tmp_path / arch
    shutil.copytree(exports[arch], out)
    return out


def signature(path: Path) -> list[tuple]:
    s = ort.InferenceSession(str(path))
    return [(a.name, a.type, tuple(a.shape)) for a in [*s.get_inputs(), *s.get_outputs()]]


def producers(path: Path) -> dict[str, str]:
    return {o: n.op_type for n in onnx.load(str(path)).graph.node for o in n.output}


def test_dynamic_writes_both_graphs_with_fp32_signature(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    res = quantize_export(d, calib_text=exports["calib"], eval_text=exports["eval"])
    for g in ("step", "parallel"):
        q = d / INT8_FILES[g]
        assert q.is_file() and res.paths[g] == q
        assert signature(q) == signature(d / f"{g}.onnx")
        info = parse_metadata(ort.InferenceSession(str(q)).get_modelmeta().custom_metadata_map, str(q))
        assert info.kind == g and info.quantization is not None
        assert info.quantization["loss_delta"] == pytest.approx(res.graphs[g]["loss_delta"])
        assert abs(res.graphs[g]["loss_delta"]) < 0.05
        assert res.graphs[g]["size_int8"] < res.graphs[g]["size_fp32"]
    step_ops = [n.op_type for n in onnx.load(str(d / "step.int8.onnx")).graph.node]
    fp32_ops = [n.op_type for n in onnx.load(str(d / "step.onnx")).graph.node]
    n_weight_ops = fp32_ops.count("Gemm") + fp32_ops.count("MatMul")
    assert step_ops.count("MatMulInteger") == n_weight_ops  # every Linear (Gemm included) is quantized
    assert res.graphs["step"]["size_ratio"] < 0.5
    par = onnx.load(str(d / "parallel.int8.onnx"))
    assert not {n.op_type for n in par.graph.node} & {"DynamicQuantizeLinear", "MatMulInteger"}
    zps = {i.name: onnx.numpy_helper.to_array(i) for i in par.graph.initializer}
    qnodes = [n for n in par.graph.node if n.op_type == "QuantizeLinear"]
    assert qnodes and all(not np.any(zps[n.input[2]]) for n in qnodes if len(n.input) > 2)  # symmetric
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["int8"]["graphs"]["step"]["loss_fp32"] > 0
    assert manifest["int8"]["graphs"]["parallel"]["tensorrt"]["structural_ok"] is True
    before = json.loads((exports["mingru"] / "manifest.json").read_text())
    assert {k: v for k, v in manifest.items() if k != "int8"} == before  # the exporter's fields are kept


def test_static_keeps_state_float_and_quantize_state_does_not(exports, tmp_path):
    d = fresh(exports, "lstm", tmp_path)
    res = quantize_export(d, method="static", calib_text=exports["calib"], calib_method="minmax")
    info = graph_info(load_proto(d / "step.onnx"), "step")
    for g in ("step", "parallel"):
        prod = producers(d / INT8_FILES[g])
        for s in info.states:
            assert prod[s.output] not in ("DequantizeLinear", "QuantizeLinear"), (g, s.output)
        assert res.graphs[g]["method"] == "static"
    step_q = onnx.load(str(d / "step.int8.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in step_q.graph.node)
    int8_inits = {i.name for i in step_q.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    qlinear_out = {o for n in step_q.graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    dq = [n for n in step_q.graph.node if n.op_type == "DequantizeLinear"]
    assert all(n.input[0] in int8_inits | qlinear_out for n in dq)  # int8 only: biases stay float
    assert res.graphs["parallel"]["tensorrt"]["structural_ok"] and res.graphs["step"]["tensorrt"]["structural_ok"]
    quantize_export(d, method="static", calib_text=exports["calib"], quantize_state=True, graphs=("step",))
    prod = producers(d / "step.int8.onnx")
    assert all(prod[s.output] == "DequantizeLinear" for s in info.states)  # the counter-example
    manifest = json.loads((d / "manifest.json").read_text())["int8"]
    assert manifest["quantize_state"] and "parallel" in manifest["graphs"]  # earlier entry kept


def test_histogram_calibration_on_parallel_graph(exports, tmp_path):
    d = fresh(exports, "lstm", tmp_path)
    res = quantize_export(d, method="static", calib_text=exports["calib"], calib_method="percentile")
    assert res.graphs["parallel"]["calib_method"] == "percentile"
    assert abs(res.graphs["parallel"]["loss_delta"]) < 0.1


def test_calibration_sees_every_timestep_not_only_t0(exports):
    path = exports["lstm"] / "step.onnx"
    info = graph_info(load_proto(path), "step")
    ids = info.vocab.encode(TEXT)
    feeds = step_feeds(path, info, ids, streams=4, steps=64, max_feeds=16)
    assert len(feeds) == 16
    first = feeds[0][info.states[1].input]
    assert not first.any()  # t = 0: zero state
    assert all(np.abs(f[info.states[1].input]).max() > 0 for f in feeds[1:])  # carried states
    assert len({f["input_ids"].tobytes() for f in feeds}) > 1


def test_budget_keeps_sensitive_nodes_float(exports, tmp_path):
    # A head column 300x the rest makes int8 cost a known, large delta (not a sign that depends on the
    # ONNX Runtime version, as a briefly trained tiny model's +-0.001 does); the budget must find the head.
    d = fresh(exports, "lstm_outlier", tmp_path)
    full = quantize_export(d, calib_text=exports["calib"], graphs=("step",)).graphs["step"]["loss_delta"]
    assert full > 0.5, full
    budget = full / 4
    res = quantize_export(d, calib_text=exports["calib"], graphs=("step",), max_loss_delta=budget)
    r = res.graphs["step"]
    assert r["loss_delta"] <= budget and r["kept_float_by_budget"]
    assert r["kept_float_by_budget"][0] == r["sensitivity"][0]["group"]
    assert any("head" in label for label in r["kept_float_labels"])
    assert set(r["kept_float"]) >= {
        n for s in r["sensitivity"] for n in s["nodes"] if s["group"] in r["kept_float_by_budget"]
    }
    meta = graph_info(load_proto(d / "step.int8.onnx"), "q").quantization
    assert meta["kept_float"] == r["kept_float"]


def test_budget_that_cannot_hold_writes_nothing(exports, tmp_path, monkeypatch):
    import rnnedge.quantization.quantize as qmod
    import rnnedge.quantization.sensitivity as smod

    def lossy(model, info, ids, streams=8):  # every int8 build costs +1 nat/char, whatever is kept float
        return 2.0 if isinstance(model, bytes) else 1.0

    monkeypatch.setattr(qmod, "graph_loss", lossy)
    monkeypatch.setattr(smod, "graph_loss", lossy)
    d = fresh(exports, "lstm", tmp_path)
    before = sorted(p.name for p in d.iterdir())
    with pytest.raises(VerificationError, match="max-loss-delta"):
        quantize_export(d, calib_text=exports["calib"], graphs=("step",), max_loss_delta=0.5)
    assert sorted(p.name for p in d.iterdir()) == before


def test_keep_float_pattern(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    res = quantize_export(d, calib_text=exports["calib"], keep_float=["*.mlp.*"], graphs=("step",))
    r = res.graphs["step"]
    assert len(r["kept_float"]) == 4 and all(".mlp." in k for k in r["kept_float_labels"])  # 2 layers x 2
    q = onnx.load(str(d / "step.int8.onnx"))
    kept_ops = {n.name: n.op_type for n in q.graph.node if n.name in r["kept_float"]}
    assert set(kept_ops) == set(r["kept_float"]) and set(kept_ops.values()) <= {"MatMul", "Gemm"}
    with pytest.raises(RnnedgeError, match="matches no quantizable node"):
        quantize_export(d, calib_text=exports["calib"], keep_float=["nope*"])


def test_bad_inputs_fail_cleanly(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    with pytest.raises(GraphError, match=r"has no parallel\.onnx, step\.onnx"):
        quantize_export(tmp_path, calib_text=exports["calib"])
    with pytest.raises(RnnedgeError, match="needs calibration text"):
        quantize_export(d, method="static")
    with pytest.raises(RnnedgeError, match="needs real text"):
        quantize_export(d)
    bad = tmp_path / "bad.txt"
    bad.write_text(TEXT + "\u00e9\u00e9 unknown")
    with pytest.raises(UnknownCharacterError, match="calibration text"):
        quantize_export(d, calib_text=bad)
    assert not any((d / f).exists() for f in INT8_FILES.values())
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temp files left
    quantize_export(d, calib_text=bad, on_unknown="skip", graphs=("step",))
    # an already-quantized graph is refused
    q = tmp_path / "q"
    q.mkdir()
    shutil.copy(d / "step.int8.onnx", q / "step.onnx")
    with pytest.raises(GraphError, match="already quantized"):
        quantize_export(q, calib_text=exports["calib"], graphs=("step",))
    # graphs of two different models in one folder
    mixed = fresh(exports, "mingru", tmp_path / "mixed")
    shutil.copy(exports["lstm"] / "step.onnx", mixed / "step.onnx")
    with pytest.raises(GraphError, match="different models"):
        quantize_export(mixed, calib_text=exports["calib"])


def test_requantizing_new_model_overwrites_old_int8(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    quantize_export(d, calib_text=exports["calib"])
    for g in ("step", "parallel"):
        shutil.copy(exports["lstm"] / f"{g}.onnx", d / f"{g}.onnx")
    quantize_export(d, calib_text=exports["calib"])
    for g in ("step", "parallel"):
        assert graph_info(load_proto(d / INT8_FILES[g]), g).arch == "lstm"


def test_cli_success_and_one_line_errors(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    runner = CliRunner()
    ok = runner.invoke(app, ["quantize", str(d), "--calib", str(exports["calib"]), "--per-channel"])
    assert ok.exit_code == 0, ok.output
    assert "step.int8.onnx" in ok.output and "kept float" in ok.output
    for args in (
        ["quantize", str(tmp_path / "none")],
        ["quantize", str(d), "--method", "static"],
        ["quantize", str(d), "--calib", str(exports["calib"]), "--method", "bogus"],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 1
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert lines[-1].startswith("rnnedge: error:") and "Traceback" not in res.output


def test_quantizer_never_imports_torch(exports, tmp_path):
    d = fresh(exports, "lstm", tmp_path)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from rnnedge.quantization import quantize_export\n"
        f"r = quantize_export({str(d)!r}, method='static', calib_text={str(exports['calib'])!r})\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok', sorted(r.paths))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok ['parallel', 'step']" in out.stdout
