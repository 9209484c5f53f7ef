"""StepSession on a state contract beyond [batch, width]: a rank-4 float32 cache and an int64 position
counter [batch], in a step graph built here with onnx.helper (no exporter involved)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from rnnedge.errors import InputError
from rnnedge.graphmeta import GraphInfo, make_state
from rnnedge.runtime import StepSession
from rnnedge.runtime.bench import run_bench
from rnnedge.runtime.bench_report import format_table
from rnnedge.vocab import CharVocab

HEADS, CONTEXT, DIM = 2, 3, 4  # the cache state is (batch, HEADS, CONTEXT, DIM); vocab size == HEADS
KV = make_state("0.kv", ("batch", HEADS, CONTEXT, DIM), "float32", "kv")
POS = make_state("0.pos", ("batch",), "int64", "position")


def synthetic_step_graph(path: Path) -> Path:
    """kv' = kv + id (broadcast), pos' = pos + 1, logits[b, h] = sum(kv'[b, h]) + pos'[b]."""
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    nodes = [
        helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", i64, [3], [1, 2, 3])),
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("o", i64, [], [1])),
        helper.make_node("Constant", [], ["red"], value=helper.make_tensor("r", i64, [2], [2, 3])),
        helper.make_node("Constant", [], ["col"], value=helper.make_tensor("c", i64, [1], [1])),
        helper.make_node("Cast", ["input_ids"], ["idf"], to=f),
        helper.make_node("Unsqueeze", ["idf", "axes"], ["id4"]),  # (B, 1, 1, 1)
        helper.make_node("Add", [KV.input, "id4"], [KV.output]),  # (B, H, C, D)
        helper.make_node("Add", [POS.input, "one"], [POS.output]),  # (B,)
        helper.make_node("ReduceSum", [KV.output, "red"], ["sums"], keepdims=0),  # (B, H)
        helper.make_node("Cast", [POS.output], ["posf"], to=f),
        helper.make_node("Unsqueeze", ["posf", "col"], ["pos2"]),  # (B, 1)
        helper.make_node("Add", ["sums", "pos2"], ["logits"]),  # (B, V=H)
    ]
    kv_shape = ["batch", HEADS, CONTEXT, DIM]
    graph = helper.make_graph(
        nodes,
        "synthetic_step",
        [
            helper.make_tensor_value_info("input_ids", i64, ["batch"]),
            helper.make_tensor_value_info(KV.input, f, kv_shape),
            helper.make_tensor_value_info(POS.input, i64, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("logits", f, ["batch", HEADS]),
            helper.make_tensor_value_info(KV.output, f, kv_shape),
            helper.make_tensor_value_info(POS.output, i64, ["batch"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    info = GraphInfo("step", CharVocab("ab"), {"arch": "synthetic"}, (KV, POS), "test")
    helper.set_model_props(model, info.to_metadata())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def graph(tmp_path: Path) -> Path:
    return synthetic_step_graph(tmp_path / "step.onnx")


def test_feeds_any_rank_and_dtype(graph: Path) -> None:
    sess = StepSession(graph, batch=3)
    first = sess.feed([1, 0, 1])
    np.testing.assert_array_equal(first, [[13, 13], [1, 1], [13, 13]])  # 12 cells of id, + pos 1
    second = sess.feed([1, 1, 0])
    np.testing.assert_array_equal(second, [[26, 26], [14, 14], [14, 14]])
    state = sess.state
    assert state["0.kv"].shape == (3, HEADS, CONTEXT, DIM) and state["0.kv"].dtype == np.float32
    assert state["0.pos"].dtype == np.int64 and state["0.pos"].tolist() == [2, 2, 2]


def test_reset_one_stream_keeps_the_others(graph: Path) -> None:
    sess = StepSession(graph, batch=3)
    sess.feed([1, 1, 1])
    sess.reset(stream=1)
    state = sess.state
    assert state["0.pos"].tolist() == [1, 0, 1]
    assert not state["0.kv"][1].any() and (state["0.kv"][[0, 2]] == 1).all()
    np.testing.assert_array_equal(sess.feed([0, 1, 0]), [[14, 14], [13, 13], [14, 14]])
    with pytest.raises(InputError, match="out of range"):
        sess.reset(stream=3)
    sess.reset()
    assert not any(a.any() for a in sess.state.values()) and sess.steps == 0


def test_state_set_and_get_are_validated(graph: Path) -> None:
    sess = StepSession(graph, batch=2)
    sess.feed([1, 0])
    good = sess.state
    kv = np.full((2, HEADS, CONTEXT, DIM), 0.5, np.float32)
    cases = [
        ({**good, "0.pos": good["0.pos"].astype(np.float32)}, "must be int64"),
        ({**good, "0.kv": kv.astype(np.float16)}, "must be float32"),
        ({**good, "0.kv": kv[:, :, :2]}, r"shape \(2, 2, 3, 4\)"),
        ({**good, "0.pos": np.zeros(3, np.int64)}, r"shape \(2,\)"),
        ({**good, "0.kv": np.where(kv > 0, np.inf, kv).astype(np.float32)}, "NaN or infinite"),
        ({**good, "0.pos": np.array([-1, 0], np.int64)}, "negative"),
        ({"0.kv": kv}, r"missing \['0.pos'\]"),
    ]
    for bad, message in cases:
        with pytest.raises(InputError, match=message):
            sess.state = bad
    assert sess.state["0.pos"].tolist() == [1, 1]  # nothing half-set
    sess.state = {"0.kv": kv, "0.pos": np.array([5, 7], np.int64)}
    got = sess.state
    got["0.pos"][:] = 0  # a copy: the session's state is untouched
    np.testing.assert_array_equal(sess.feed([0, 1]), [[6 + 6, 6 + 6], [18 + 8, 18 + 8]])
    sess.state = [kv, np.array([0, 0], np.int64)]  # a list in metadata order
    assert sess.state["0.pos"].tolist() == [0, 0]


def test_describe_reports_full_shapes_and_bytes(graph: Path) -> None:
    sess = StepSession(graph, batch=4)
    info = sess.describe()
    assert info["states"]["0.kv"] == {
        "shape": [4, HEADS, CONTEXT, DIM],
        "dtype": "float32",
        "kind": "kv",
        "bytes_per_stream": HEADS * CONTEXT * DIM * 4,
    }
    assert info["states"]["0.pos"]["shape"] == [4] and info["states"]["0.pos"]["bytes_per_stream"] == 8
    assert sess.state_bytes_per_stream == info["state_bytes_per_stream"] == 96 + 8
    assert info["variant"] == "fp32" and info["arch"] == "synthetic"


def test_no_allocation_per_step_with_any_state(graph: Path) -> None:
    sess = StepSession(graph, batch=2)
    out = sess.feed([1, 1], copy=False)
    ids = np.array([1, 0], dtype=np.int64)
    for _ in range(20):
        sess.feed(ids, copy=False)
    tracemalloc.start()
    for _ in range(1000):
        sess.feed(ids, copy=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000 and sess.feed(ids, copy=False) is out
    assert sess.state["0.pos"].tolist() == [1022, 1022]


def test_bench_without_matmuls_metadata_says_the_floor_is_not_available(graph: Path) -> None:
    res = run_bench(graph.parent, threads=1, steps=10, seq_lens=(), batches=(1,), stream_tokens=5)
    assert res["floor"]["available"] is False and "rnnedge.matmuls" in res["floor"]["note"]
    assert not any("floor" in key for key in res["ratios"])
    assert res["variants"]["fp32"]["state_bytes_per_stream"] == 104
    assert res["long_stream"]["max_abs_state"] > 0  # the kv state grows with the sampled ids
    table = format_table(res)
    assert "floor not available" in table and "fp32 batch1" in table and "104 bytes" in table
