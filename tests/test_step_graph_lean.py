"""The lean step graph: no unit time axis, fewer nodes, the same function; g(·) without a branch."""

from __future__ import annotations

from collections import Counter
from unittest import mock

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from rnnedge.exporter import export_model, trace
from rnnedge.exporter.lean import LeanError, lean_step
from rnnedge.exporter.peephole import interpolations, one_minus_sigmoid
from rnnedge.exporter.simplify import onnxsim_simplify, step_simplify
from rnnedge.exporter.token_tables import token_tables
from rnnedge.models.scan import g
from tests.conftest import ARCHS, tiny_model
from tests.test_export import make_checkpoint

SHAPE_OPS = {"Unsqueeze", "Squeeze", "Reshape", "Concat", "Shape", "Expand"}


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return list(sess.run(None, feeds))


def _feeds(model: onnx.ModelProto, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in model.graph.input:
        t = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else batch for d in t.shape.dim]
        if t.elem_type == TensorProto.INT64:
            feeds[v.name] = rng.integers(0, 5, size=shape, dtype=np.int64)
        else:
            feeds[v.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _ort_nodes(model: onnx.ModelProto, tmp_path) -> int:
    """Nodes ONNX Runtime runs after its own optimizations (level all)."""
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return len(onnx.load(opts.optimized_model_filepath).graph.node)


def test_g_is_the_papers_function_without_a_branch() -> None:
    x = torch.cat([torch.randn(200_000) * 4, torch.tensor([0.0, -0.0, 1e-3, -1e-3, 30.0, -30.0, -104.0, 1e6])])
    x.requires_grad_(True)
    y = g(x)
    want = torch.where(x >= 0, x + 0.5, torch.sigmoid(x))
    assert torch.equal(y, want)  # bit-identical values
    (grad,) = torch.autograd.grad(y.sum(), x)
    (want_grad,) = torch.autograd.grad(want.sum(), x)
    away = x.detach().abs() > 1e-6  # the tie x + 0.5 == σ(x) is |x| < 3e-8
    assert torch.equal(grad[away], want_grad[away])
    assert (y[x > -80] > 0).all()  # the candidate state stays positive (σ underflows below −88 in fp32)


@pytest.mark.parametrize("arch", ARCHS)
def test_lean_step_graph_drops_the_time_axis_and_keeps_the_function(arch: str, tmp_path) -> None:
    model = tiny_model(arch)
    simplified = onnxsim_simplify(onnx.load_from_string(trace.trace_step(model, 17)))
    cells = all(len(s.shape) == 2 for s in model.config.state_infos())  # (batch, H) states: a plain cell
    lean = lean_step(simplified)
    onnx.checker.check_model(lean, full_check=True)
    assert [v.name for v in lean.graph.input] == [v.name for v in simplified.graph.input]
    assert [v.name for v in lean.graph.output] == [v.name for v in simplified.graph.output]
    for batch in (1, 3):
        feeds = _feeds(simplified, batch, seed=batch)
        for got, want in zip(_run(lean, feeds), _run(simplified, feeds), strict=True):
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= 1e-5
    kept = step_simplify(onnx.load_from_string(trace.trace_step(model, 17)))
    if len(lean.graph.node) >= len(simplified.graph.node):  # attention: the unit axis moves with a Transpose
        assert not cells and len(kept.graph.node) == len(token_tables(simplified).graph.node)  # onnxsim's, tabled
        return
    ops = Counter(n.op_type for n in lean.graph.node)
    if cells:
        assert not set(ops) & SHAPE_OPS, ops
        assert not set(ops) & {"Neg", "Where", "GreaterOrEqual"} or arch == "minlstm", ops  # minLSTM: softplus(−k)
        assert ops["Gather"] == 1  # the embedding; the scan's time-step Gathers are gone
    assert len(kept.graph.node) == len(token_tables(lean).graph.node)  # the exporter's: lean, then token tables
    assert _ort_nodes(lean, tmp_path) < _ort_nodes(simplified, tmp_path)


def _unit_axis_graph(middle: list[onnx.NodeProto]) -> onnx.ModelProto:
    """x (batch, 4) -> Unsqueeze(1) -> middle (u -> m) -> Gather(axis 1, index 0) -> y (batch, 4)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 1, 4), "bias"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axis1"], ["u"]),
        *middle,
        helper.make_node("Gather", ["m", "zero"], ["y"], axis=1),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_lowering_rewrites_what_it_knows_and_restores_the_axis_for_the_rest() -> None:
    known = _unit_axis_graph([helper.make_node("Add", ["u", "bias"], ["m"])])  # rank-3 constant: squeezed
    lean = lean_step(known)
    assert [n.op_type for n in lean.graph.node] == ["Add"]
    unknown = _unit_axis_graph(
        [
            helper.make_node("Transpose", ["u"], ["t"], perm=[0, 2, 1]),  # no rule: gets its axis back
            helper.make_node("Transpose", ["t"], ["m0"], perm=[0, 2, 1]),
            helper.make_node("Sigmoid", ["m0"], ["m"]),
        ]
    )
    lean = lean_step(unknown)
    assert "Unsqueeze" in {n.op_type for n in lean.graph.node}
    for model in (known, unknown):
        feeds = _feeds(model, 3)
        np.testing.assert_allclose(_run(lean_step(model), feeds)[0], _run(model, feeds)[0], atol=1e-6)


def test_one_minus_sigmoid_shares_the_sigmoid_and_drops_neg() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("a", "b")]
    nodes = [
        helper.make_node("Neg", ["x"], ["n"]),
        helper.make_node("Sigmoid", ["n"], ["a"]),  # σ(−x) first, σ(x) after: the rewrite reorders
        helper.make_node("Sigmoid", ["x"], ["b"]),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 17)])
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert one_minus_sigmoid(rewritten) == 1
    onnx.checker.check_model(rewritten)
    assert Counter(n.op_type for n in rewritten.graph.node) == {"Sigmoid": 1, "Sub": 1}
    feeds = {"x": np.linspace(-9, 9, 6, dtype=np.float32).reshape(2, 3)}
    for got, want in zip(_run(rewritten, feeds), _run(model, feeds), strict=True):
        assert np.abs(got - want).max() <= 1e-7


def test_step_simplify_keeps_onnxsims_graph_when_the_lean_pass_gives_up() -> None:
    raw = onnx.load_from_string(trace.trace_step(tiny_model("mingru"), 17))
    with mock.patch("rnnedge.exporter.lean.lean_step", side_effect=LeanError("planted")):
        fallback = step_simplify(raw)
    assert len(fallback.graph.node) == len(onnxsim_simplify(raw).graph.node)
    assert len(step_simplify(raw).graph.node) < len(fallback.graph.node)


def test_exported_step_graph_is_lean_and_verified(tmp_path) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", "minlstm", seed=1)
    result = export_model(ckpt, tmp_path / "out", max_seq_len=1024)
    entry = result.manifest["graphs"]["step"]
    assert entry["simplified"]["applied"] is True
    assert not set(entry["op_types"]) & SHAPE_OPS
    assert all(c["passed"] for c in result.manifest["verification"]["checks"])


def test_interpolation_becomes_three_nodes() -> None:
    """(1 − s)·u + s·v -> u + s·(v − u): minGRU's h = (1 − z)·h₀ + z·h̃ once 1 − z shares σ."""
    names = ("s", "u", "v")
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in names]
    out = helper.make_tensor_value_info("h", TensorProto.FLOAT, [2, 3])
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    nodes = [
        helper.make_node("Sub", ["one", "s"], ["a"]),
        helper.make_node("Mul", ["u", "a"], ["au"]),
        helper.make_node("Mul", ["s", "v"], ["sv"]),
        helper.make_node("Add", ["sv", "au"], ["h"]),
    ]
    graph = helper.make_graph(nodes, "g", ins, [out], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert interpolations(rewritten) == 1
    onnx.checker.check_model(rewritten)
    assert sorted(n.op_type for n in rewritten.graph.node) == ["Add", "Mul", "Sub"]
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((2, 3)).astype(np.float32) for n in names}
    np.testing.assert_allclose(_run(rewritten, feeds)[0], _run(model, feeds)[0], atol=1e-6)
