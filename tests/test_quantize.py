"""rnnedge.quantization: every recipe makes a variant that keeps the fp32 signature, float state, a small loss delta."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from rnnedge.errors import ConfigError, GraphError, RnnedgeError, UnknownCharacterError, VerificationError
from rnnedge.graphmeta import graph_file, list_variants
from rnnedge.inference import open_graph
from rnnedge.quantization import PRESETS, quantize_export, recipe
from rnnedge.quantization.builder import HANDLERS
from rnnedge.quantization.calibrate import step_feeds
from rnnedge.quantization.recipes import RECIPE_TYPES
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


def ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def producers(path: Path) -> dict[str, str]:
    return {o: n.op_type for n in onnx.load(str(path)).graph.node for o in n.output}


def weight_nodes(path: Path) -> int:
    """Linear layers (Gemm, or MatMul with a constant weight) of an fp32 graph."""
    model = onnx.load(str(path))
    consts = {i.name for i in model.graph.initializer}
    return sum(n.op_type == "Gemm" or (n.op_type == "MatMul" and n.input[1] in consts) for n in model.graph.node)


def check_variant_basics(d: Path, name: str, res, max_delta: float, io_dtype: str = "tensor(float)") -> None:
    """Both graphs: file named after the recipe, metadata, same I/O as fp32 (dtypes as the recipe says),
    float state outputs, a finite and small held-out loss delta."""
    for kind in ("step", "parallel"):
        path = d / graph_file(kind, name)
        assert res.paths[kind] == path and path.is_file()
        fp32, var = open_graph(d / graph_file(kind)), open_graph(path)
        assert var.info.variant == name and var.info.recipe == res.recipe.to_dict()
        assert var.info.config == fp32.info.config and var.info.vocab == fp32.info.vocab
        assert [(n, s) for n, _, s in var.signature()] == [(n, s) for n, _, s in fp32.signature()]
        assert {t for _, t, _ in var.signature()} <= {"tensor(int64)", io_dtype}
        prod = producers(path)
        assert all(prod[s.output] not in ("DequantizeLinear", "QuantizeLinear") for s in var.info.states)
        report = res.graphs[kind]
        assert np.isfinite(report["loss_delta"]) and abs(report["loss_delta"]) < max_delta, report["loss_delta"]
        assert var.info.quantization["loss_delta"] == pytest.approx(report["loss_delta"])
        assert report["size_variant"] < report["size_fp32"]


def test_every_recipe_type_and_preset_has_a_handler():
    assert set(RECIPE_TYPES.values()) <= set(HANDLERS)
    assert all(type(r) in HANDLERS for r in PRESETS.values())


def test_dynamic_needs_no_calibration_and_quantizes_every_linear(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    res = quantize_export(d, eval_text=exports["eval"])  # no --calib: dynamic does not calibrate
    assert res.variant == "int8-dynamic"
    check_variant_basics(d, "int8-dynamic", res, 0.05)
    for kind in ("step", "parallel"):
        assert ops(d / graph_file(kind, "int8-dynamic")).count("MatMulInteger") == weight_nodes(d / graph_file(kind))
        assert res.graphs[kind]["calib_source"] is None and "eval.txt" in res.graphs[kind]["eval_source"]
    # TensorRT cannot take dynamic quantization: recorded for information, the variant is still written.
    assert res.graphs["parallel"]["tensorrt"]["rules_ok"] is False
    manifest = json.loads((d / "manifest.json").read_text())
    entry = manifest["variants"]["int8-dynamic"]
    assert entry["recipe"]["type"] == "DynamicInt8" and set(entry["graphs"]) == {"parallel", "step"}
    assert entry["graphs"]["step"]["file"] == "step.int8-dynamic.onnx"
    before = json.loads((exports["mingru"] / "manifest.json").read_text())
    assert {k: v for k, v in manifest.items() if k != "variants"} == before  # the exporter's fields are kept
    assert set(list_variants(d)) == {"fp32", "int8-dynamic"}


def test_qdq_is_symmetric_keeps_state_float_and_quantize_state_does_not(exports, tmp_path):
    d = fresh(exports, "lstm", tmp_path)
    res = quantize_export(d, "int8-qdq", calib_text=exports["calib"], eval_text=exports["eval"])
    check_variant_basics(d, "int8-qdq", res, 0.05)
    for kind in ("step", "parallel"):
        q = onnx.load(str(d / graph_file(kind, "int8-qdq")))
        assert not {n.op_type for n in q.graph.node} & {"DynamicQuantizeLinear", "MatMulInteger"}
        zps = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
        qnodes = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
        assert qnodes and all(not np.any(zps[n.input[2]]) for n in qnodes if len(n.input) > 2)  # zero point 0
        int8_inits = {i.name for i in q.graph.initializer if i.data_type == onnx.TensorProto.INT8}
        qlinear_out = {o for n in qnodes for o in n.output}
        dq = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
        assert all(n.input[0] in int8_inits | qlinear_out for n in dq)  # int8 only: biases stay float
        assert res.graphs[kind]["tensorrt"]["rules_ok"]
    info = open_graph(d / "step.onnx").info
    counter = quantize_export(d, "int8-qdq", calib_text=exports["calib"], quantize_state=True, graphs=("step",))
    prod = producers(d / "step.int8-qdq.onnx")
    assert all(prod[s.output] == "DequantizeLinear" for s in info.states)  # the counter-example
    entry = json.loads((d / "manifest.json").read_text())["variants"]["int8-qdq"]
    assert entry["recipe"]["quantize_state"] and entry["graphs"]["step"]["quantize_state"]
    # The parallel graph, not rebuilt, keeps its entry and says which recipe made it.
    assert entry["graphs"]["parallel"]["recipe"]["quantize_state"] is False
    assert counter.graphs.keys() == {"step"}


def test_histogram_calibration_on_parallel_graph(exports, tmp_path):
    d = fresh(exports, "lstm", tmp_path)
    res = quantize_export(
        d, "int8-qdq", calib_text=exports["calib"], eval_text=exports["eval"], calib_method="percentile",
        graphs=("parallel",),
    )  # fmt: skip
    assert res.graphs["parallel"]["calib_method"] == "percentile"
    assert abs(res.graphs["parallel"]["loss_delta"]) < 0.1


def test_fp16_keeps_state_float32_at_the_io_unless_asked(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    res = quantize_export(d, "fp16", eval_text=exports["eval"])
    check_variant_basics(d, "fp16", res, 0.01)
    for kind in ("step", "parallel"):
        model = onnx.load(str(d / graph_file(kind, "fp16")))
        halves = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
        assert len(halves) >= weight_nodes(d / graph_file(kind))  # every weight is float16
        assert open_graph(d / graph_file(kind, "fp16")).info.states == open_graph(d / graph_file(kind)).info.states
    res = quantize_export(d, "fp16", eval_text=exports["eval"], keep_io_types=False, graphs=("step",))
    var = open_graph(d / "step.fp16.onnx")
    assert {s.dtype for s in var.info.states} == {"float16"}  # declared in the metadata ...
    assert all(t == "tensor(float16)" for n, t, _ in var.signature() if n.startswith("state_"))  # ... and real
    assert np.isfinite(res.graphs["step"]["loss_delta"]) and abs(res.graphs["step"]["loss_delta"]) < 0.01


@pytest.mark.parametrize(("name", "bits"), [("int4-weight", 4), ("int8-weight", 8)])
def test_weight_only_turns_every_linear_into_matmulnbits(exports, tmp_path, name, bits):
    d = fresh(exports, "mingru", tmp_path)
    res = quantize_export(d, name, eval_text=exports["eval"])
    check_variant_basics(d, name, res, 0.05)
    for kind in ("step", "parallel"):
        model = onnx.load(str(d / graph_file(kind, name)))
        nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
        assert len(nbits) == weight_nodes(d / graph_file(kind))
        assert {onnx.helper.get_attribute_value(a) for n in nbits for a in n.attribute if a.name == "bits"} == {bits}
        assert res.graphs[kind]["bits"] == bits and not res.graphs[kind]["tensorrt"]["rules_ok"]


def test_recipe_options_are_validated_by_the_recipe(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    for options, message in (
        ({"calib_steps": -4}, "calib-steps must be a positive integer, got -4"),
        ({"calib_steps": 0}, "calib-steps must be a positive integer, got 0"),
        ({"calib_method": "mean"}, "calib method must be one of"),
        ({"graphs": ("step", "both")}, "graphs must be among"),
    ):
        with pytest.raises(ConfigError, match=message):
            quantize_export(d, "int8-qdq", eval_text=exports["eval"], **options)
    with pytest.raises(ConfigError, match="recipe int8-dynamic has no option calib_steps"):
        quantize_export(d, "dynamic", eval_text=exports["eval"], calib_steps=64)
    with pytest.raises(ConfigError, match="weight-only bits must be 4 or 8"):
        quantize_export(d, "int4-weight", eval_text=exports["eval"], bits=3)
    with pytest.raises(ConfigError, match="unknown precision recipe 'int3'"):
        quantize_export(d, "int3", eval_text=exports["eval"])
    assert recipe("static", calib_steps=64).calib_steps == 64  # 0.1's --method names still work
    assert set(list_variants(d)) == {"fp32"}


def test_calibration_never_sees_the_eval_text(exports, tmp_path, monkeypatch):
    import rnnedge.quantization.quantize as qmod

    seen: list[np.ndarray] = []
    real = qmod.calibration_feeds
    monkeypatch.setattr(qmod, "calibration_feeds", lambda r, g, ids: seen.append(ids) or real(r, g, ids))
    d = fresh(exports, "mingru", tmp_path)
    vocab = open_graph(d / "step.onnx").info.vocab
    whole = vocab.encode(exports["eval"].read_text())
    cut = int(len(whole) * 0.9)
    for kwargs in ({"eval_text": exports["eval"]}, {"calib_text": exports["eval"]}):
        seen.clear()
        res = quantize_export(d, "int8-qdq", graphs=("step",), **kwargs)
        report = res.graphs["step"]
        assert np.array_equal(seen[0], whole[:cut])  # calibrated on the first 90% only
        assert report["eval_chars"] == len(whole) - cut  # measured on the last 10% only
        assert "first 90%" in report["calib_source"] and "last 10%" in report["eval_source"]
    seen.clear()  # the same file given twice is split too
    quantize_export(d, "int8-qdq", graphs=("step",), calib_text=exports["eval"], eval_text=exports["eval"])
    assert len(seen[0]) == cut
    seen.clear()  # two different texts: each whole
    res = quantize_export(d, "int8-qdq", graphs=("step",), calib_text=exports["calib"], eval_text=exports["eval"])
    assert len(seen[0]) == len(vocab.encode(TEXT)) and res.graphs["step"]["eval_chars"] == len(whole)


def test_calibration_sees_every_timestep_not_only_t0(exports):
    graph = open_graph(exports["lstm"] / "step.onnx")
    ids = graph.info.vocab.encode(TEXT)
    feeds = step_feeds(graph, ids, streams=4, steps=64, max_feeds=16)
    assert len(feeds) == 16
    state = graph.info.states[1].input
    assert not feeds[0][state].any()  # t = 0: zero state
    assert all(np.abs(f[state]).max() > 0 for f in feeds[1:])  # carried states
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
    meta = open_graph(d / "step.int8-dynamic.onnx").info.quantization
    assert meta["kept_float"] == r["kept_float"]


def test_budget_that_cannot_hold_writes_nothing(exports, tmp_path, monkeypatch):
    import rnnedge.quantization.loss as lmod

    real = lmod.held_out_loss

    def lossy(graph, ids):  # every variant costs +1 nat/char, whatever is kept float
        value = real(graph, ids)
        variant = graph.info.variant if hasattr(graph, "info") else "variant"
        return value if variant == "fp32" else value + 1.0

    monkeypatch.setattr(lmod, "held_out_loss", lossy)
    d = fresh(exports, "lstm", tmp_path)
    before = sorted(p.name for p in d.iterdir())
    with pytest.raises(VerificationError, match="max-loss-delta"):
        quantize_export(d, calib_text=exports["calib"], graphs=("step",), max_loss_delta=0.5)
    assert sorted(p.name for p in d.iterdir()) == before


def test_keep_float_pattern(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    res = quantize_export(d, eval_text=exports["eval"], keep_float=["*.mlp.*"], graphs=("step",))
    r = res.graphs["step"]
    assert len(r["kept_float"]) == 4 and all(".mlp." in k for k in r["kept_float_labels"])  # 2 layers x 2
    q = onnx.load(str(d / "step.int8-dynamic.onnx"))
    kept_ops = {n.name: n.op_type for n in q.graph.node if n.name in r["kept_float"]}
    assert set(kept_ops) == set(r["kept_float"]) and set(kept_ops.values()) <= {"MatMul", "Gemm"}
    with pytest.raises(RnnedgeError, match="matches no node int8-dynamic converts"):
        quantize_export(d, eval_text=exports["eval"], keep_float=["nope*"])


def test_bad_inputs_fail_cleanly(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    with pytest.raises(GraphError, match=r"has no parallel\.onnx, step\.onnx"):
        quantize_export(tmp_path, eval_text=exports["eval"])
    with pytest.raises(RnnedgeError, match="pass --eval PATH"):
        quantize_export(d)
    with pytest.raises(RnnedgeError, match="pass --eval PATH"):
        quantize_export(d, "int8-qdq")
    with pytest.raises(RnnedgeError, match="on-unknown must be error or skip"):
        quantize_export(d, eval_text=exports["eval"], on_unknown="drop")
    bad = tmp_path / "bad.txt"
    bad.write_text(TEXT + "\u00e9\u00e9 unknown")
    with pytest.raises(UnknownCharacterError, match="calibration text"):
        quantize_export(d, "int8-qdq", calib_text=bad)
    short = tmp_path / "short.txt"
    short.write_text(TEXT[:200])
    with pytest.raises(RnnedgeError, match="too short to split"):
        quantize_export(d, "int8-qdq", eval_text=short)
    assert set(list_variants(d)) == {"fp32"}
    assert not [p for p in d.iterdir() if p.name.startswith(".") and p.name != ".rnnedge-ledger.json"]  # no temp files
    quantize_export(d, calib_text=bad, on_unknown="skip", graphs=("step",))
    q = tmp_path / "q"  # an already-quantized graph is refused
    q.mkdir()
    shutil.copy(d / "step.int8-dynamic.onnx", q / "step.onnx")
    with pytest.raises(GraphError, match="already quantized"):
        quantize_export(q, eval_text=exports["eval"], graphs=("step",))
    mixed = fresh(exports, "mingru", tmp_path / "mixed")  # graphs of two different models in one folder
    shutil.copy(exports["lstm"] / "step.onnx", mixed / "step.onnx")
    with pytest.raises(GraphError, match="different models"):
        quantize_export(mixed, eval_text=exports["eval"])


def test_requantizing_new_model_overwrites_old_variant(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    quantize_export(d, eval_text=exports["eval"])
    for g in ("step", "parallel"):
        shutil.copy(exports["lstm"] / f"{g}.onnx", d / f"{g}.onnx")
    quantize_export(d, eval_text=exports["eval"])
    for g in ("step", "parallel"):
        assert open_graph(d / graph_file(g, "int8-dynamic")).info.arch == "lstm"


def test_a_failing_tool_is_one_line_with_what_it_printed(exports, tmp_path, monkeypatch):
    from rnnedge.quantization.methods.dynamic import DynamicBuilder

    def broken(self, keep_float):
        print("quantizer says: unsupported node")
        raise AssertionError

    monkeypatch.setattr(DynamicBuilder, "convert", broken)
    d = fresh(exports, "mingru", tmp_path)
    with pytest.raises(RnnedgeError, match=r"could not make the int8-dynamic \w+ graph: AssertionError") as err:
        quantize_export(d, eval_text=exports["eval"])
    assert "quantizer says: unsupported node" in str(err.value)
    assert set(list_variants(d)) == {"fp32"}
