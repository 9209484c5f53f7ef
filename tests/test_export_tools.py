"""Exporter safety nets: simplification fallback, nothing written on failure, TensorRT check, .ort output."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rnnedge.errors import RnnedgeError, VerificationError
from rnnedge.exporter import check_tensorrt, export_model
from rnnedge.exporter import verify as vfy
from rnnedge.exporter.simplify import onnxsim_simplify, try_simplify
from rnnedge.graphmeta import parse_metadata
from tests.test_export import make_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "mingru", "mingru", seed=3)


def _tiny_graph() -> onnx.ModelProto:
    """y = x * 2 + 1 with a dynamic batch axis (a stand-in for simplifier unit tests)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    two = numpy_helper.from_array(np.full(4, 2, np.float32), "two")
    one = numpy_helper.from_array(np.ones(4, np.float32), "one")
    nodes = [helper.make_node("Mul", ["x", "two"], ["m"]), helper.make_node("Add", ["m", "one"], ["y"])]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [two, one]))


def test_try_simplify_rejects_failure_growth_and_baked_dims() -> None:
    model = _tiny_graph()

    def boom(m: onnx.ModelProto) -> onnx.ModelProto:
        raise RuntimeError("shape inference exploded")

    assert "simplifier failed" in try_simplify(model, boom).reason

    def grow(m: onnx.ModelProto) -> onnx.ModelProto:
        g = onnx.ModelProto()
        g.CopyFrom(m)
        g.graph.node[-1].output[0] = "y0"
        g.graph.node.append(helper.make_node("Identity", ["y0"], ["y"]))
        return g

    cand = try_simplify(model, grow)
    assert cand.model is None and "grew" in cand.reason

    def bake(m: onnx.ModelProto) -> onnx.ModelProto:
        g = onnx.ModelProto()
        g.CopyFrom(m)
        g.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 16
        return g

    cand = try_simplify(model, bake)
    assert cand.model is None and "fixed a dynamic dimension" in cand.reason and "x[16, 4]" in cand.reason
    ok = try_simplify(model, onnxsim_simplify)
    assert ok.model is not None and ok.reason == ""


def test_simplifier_that_breaks_numerics_is_not_kept(ckpt, tmp_path) -> None:
    def corrupt(m: onnx.ModelProto) -> onnx.ModelProto:
        out = onnxsim_simplify(m)
        biggest = max(out.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        arr = numpy_helper.to_array(biggest).copy()
        arr.flat[0] += 0.5  # one weight off: still valid ONNX, smaller, dynamic - only numbers catch it
        biggest.CopyFrom(numpy_helper.from_array(arr, biggest.name))
        return out

    result = export_model(ckpt, tmp_path / "out", simplifier=corrupt, max_seq_len=1024)
    for kind in ("parallel", "step"):
        g = result.manifest["graphs"][kind]
        assert g["simplified"]["applied"] is False
        assert "failed verification" in g["simplified"]["reason"]
        assert g["nodes"] == g["nodes_before_simplify"]
    assert result.manifest["verification"]["passed"] is True


def test_failed_verification_writes_nothing(ckpt, tmp_path) -> None:
    def broken(ref, par, step):
        return vfy.CheckResult("planted_failure", "parallel", 0.25, vfy.TOLERANCE)

    def raising_check(ref, par, step):
        raise RuntimeError("ORT: shape mismatch at T=7")

    checks = [*vfy.default_checks(step_tokens=50), broken, raising_check]
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(VerificationError) as err:  # a user's folder needs --overwrite (ownership.py) to be tried
        export_model(ckpt, existing, checks=checks, simplify=False, overwrite=True)
    msg = str(err.value)
    assert "planted_failure FAILED (max abs diff 0.25" in msg
    assert "raising_check FAILED (max abs diff inf" in msg and "shape mismatch at T=7" in msg
    for name in ("parallel_vs_torch_fp64", "step_vs_parallel", "carried_state", "batch_vs_single"):
        assert f"{name} ok (max abs diff" in msg
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]
    fresh = tmp_path / "new" / "dir"
    with pytest.raises(VerificationError):
        export_model(ckpt, fresh, checks=checks, simplify=False)
    assert not fresh.exists()


def _planted() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, ["batch", 4])
    w = numpy_helper.from_array(np.ones((4, 4), np.uint8), "w")
    zp = numpy_helper.from_array(np.array(3, np.uint8), "zp")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dql"),
        helper.make_node("MatMulInteger", ["xq", "w", "xz"], ["y"], name="mmi"),
        helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], name="q_asym"),
        helper.make_node("QuantizeLinear", ["x", "scale", "zp0"], ["qs"], name="q_sym"),
        helper.make_node("DequantizeLinear", ["qs", "scale", "zp0"], ["dqs"], name="dq_sym"),
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["axis"]),
        helper.make_node("CumSum", ["x", "axis"], ["cs"], name="cumsum_dyn"),
    ]
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    zp0 = numpy_helper.from_array(np.array(0, np.int8), "zp0")
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, zp, scale, zero, zp0]))


def test_tensorrt_check_finds_planted_problems(tmp_path) -> None:
    path = tmp_path / "bad.onnx"
    onnx.save(_planted(), path)
    problems = check_tensorrt(path)
    text = "\n".join(problems)
    assert "DynamicQuantizeLinear 'dql'" in text
    assert "MatMulInteger 'mmi'" in text
    assert "non-zero zero point" in text and "uint8 zero point" in text and "q_asym" in text
    assert "CumSum axis must be a constant" in text
    assert "q_sym" not in text and "dq_sym" not in text  # symmetric int8 QDQ is what TensorRT wants
    assert len(problems) == 5
    lstm = helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="l", hidden_size=4, input_forget=1, layout=1)
    graph = helper.make_graph([lstm], "g", [], [])
    assert len(check_tensorrt(helper.make_model(graph))) == 2


def test_ort_format_and_stale_files(ckpt, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "parallel.int8.onnx").write_bytes(b"stale")  # named like a variant, but not rnnedge's (no ledger)
    with pytest.raises(RnnedgeError, match="--overwrite"):
        export_model(ckpt, out, ort_format=True, simplify=False, max_seq_len=1024)
    result = export_model(ckpt, out, ort_format=True, simplify=False, max_seq_len=1024, overwrite=True)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "manifest.json",
            "parallel.onnx",
            "step.onnx",
            "parallel.ort",
            "step.ort",
            "required_operators.config",
            "parallel.int8.onnx",
            ".rnnedge-ledger.json",
        ]
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kept_not_ours"] == ["parallel.int8.onnx"] and "removed_stale" not in manifest
    entry = manifest["ort_format"]
    assert entry["files"] == ["parallel.ort", "required_operators.config", "step.ort"]
    assert any("LayerNormalization" in line for line in entry["required_operators"])
    assert all(v <= 1e-4 for v in entry["max_abs_diff_vs_onnx"].values())
    config = (out / "required_operators.config").read_text()
    assert "ai.onnx;" in config and "/tmp" not in config
    sess = ort.InferenceSession(str(out / "step.ort"), providers=["CPUExecutionProvider"])
    info = parse_metadata(sess.get_modelmeta().custom_metadata_map, "step.ort")
    assert info.kind == "step" and result.paths["step"].is_file()
    # A later export without --ort-format removes the .ort files that no longer match (they are rnnedge's).
    (out / "parallel.int8.onnx").unlink()
    export_model(ckpt, out, simplify=False, max_seq_len=1024)
    assert sorted(p.name for p in out.iterdir()) == [
        ".rnnedge-ledger.json",
        "manifest.json",
        "parallel.onnx",
        "step.onnx",
    ]
