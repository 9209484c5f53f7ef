"""token_tables (exporter/token_tables.py) on hand-made step graphs: what it folds, and what it must not."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from rnnedge.exporter.token_tables import TABLE_PREFIX, token_tables
from rnnedge.graphmeta import INPUT_IDS

V, D = 7, 4


def step_graph(batch_op: bool) -> onnx.ModelProto:
    """ids -> Gather(E) -> Sigmoid -> Mul(W) [-> ReduceMax over the batch when batch_op] -> Add(state) -> out."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((V, D)).astype(np.float32), "E"),
             numpy_helper.from_array(rng.standard_normal(D).astype(np.float32), "W")]  # fmt: skip
    nodes = [helper.make_node("Gather", ["E", INPUT_IDS], ["x"], axis=0), helper.make_node("Sigmoid", ["x"], ["s"]),
             helper.make_node("Mul", ["s", "W"], ["m"])]  # fmt: skip
    last = "m"
    if batch_op:
        nodes.append(helper.make_node("ReduceMax", ["m"], ["r"], keepdims=1, axes=[0]))
        last = "r"
    nodes.append(helper.make_node("Add", [last, "h"], ["out"]))
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", D])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", D])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, ids: np.ndarray, h: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["out"], {INPUT_IDS: ids, "h": h})[0]


def test_the_ids_only_cone_becomes_one_gather_of_a_table() -> None:
    model = step_graph(batch_op=False)
    tabled = token_tables(model)
    assert [n.op_type for n in tabled.graph.node] == ["Gather", "Add"]
    assert tabled.graph.node[0].input[0].startswith(TABLE_PREFIX)
    ids, h = np.array([3, 0, 6, 3]), np.ones((4, D), np.float32)
    np.testing.assert_allclose(run(tabled, ids, h), run(model, ids, h), rtol=0, atol=1e-7)


def test_a_cone_that_mixes_the_batch_is_left_alone() -> None:
    model = step_graph(batch_op=True)
    assert token_tables(model) is model  # a row of the cone depends on the other rows: no table is exact
