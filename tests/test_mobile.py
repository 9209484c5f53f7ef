"""The mobile export target: fixed batch-1 step graph inside the NNAPI/CoreML op sets, verified, .ort,
operator config, and ORT's mobile checker figures (fp32 and a QDQ int8 variant) kept from regressing."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import warnings
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.errors import RnnedgeError
from rnnedge.exporter import export_model, mobile
from rnnedge.exporter.graphedit import constants_to_initializers
from rnnedge.exporter.mobile_ops import decompose_gelu, elementary_ops
from rnnedge.graphmeta import INPUT_IDS, MANIFEST, parse_metadata
from rnnedge.quantization import PRESETS
from rnnedge.training.checkpoint import save_checkpoint
from tests.conftest import tiny_model
from tests.test_export import VOCAB

MOBILE_ARCHS = ("mingru", "minlstm")
# Ops each of NNAPI, CoreML MLProgram and CoreML NeuralNetwork lists (onnxruntime/tools/mobile_helpers/*.md),
# plus Gather (the embedding: NNAPI and NeuralNetwork take it, MLProgram leaves that one first node out).
COMMON_OPS = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Relu", "Sigmoid", "Tanh", "Clip", "MatMul", "Gemm"}
COMMON_OPS |= {"Slice", "Split", "Concat", "Reshape", "Gather"}


def make_checkpoint(path, arch: str, seed: int = 0):
    """A tiny model as initialised (the exporter's tests scale weights 2.5x; at that scale minLSTM's
    f/(f + i) gates, ~3 ulp in fp32, move logits by ~6e-4 and the mobile check refuses the graph)."""
    return save_checkpoint(path, tiny_model(arch, vocab_size=len(VOCAB), seed=seed), VOCAB, val_loss=1.0, training={})


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("mobile")
    out = {}
    for arch in MOBILE_ARCHS:
        ckpt = make_checkpoint(root / f"ckpt_{arch}", arch, seed=2)
        out[arch] = export_model(ckpt, root / f"out_{arch}", max_seq_len=1024, target="mobile")
    return out


def test_exact_gelu_without_erf_matches_torch() -> None:
    """The traced nn.GELU pattern is found and replaced; error vs torch's exact GELU (fp64) <= 1e-6·max(1, |x|)."""
    buf = io.BytesIO()
    x = torch.linspace(-12, 12, 64).reshape(64, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(torch.nn.GELU(), (x,), buf, input_names=["x"], dynamic_axes={"x": {0: "n"}}, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    assert decompose_gelu(model) == 1
    elementary_ops(model)
    constants_to_initializers(model)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Erf", "Gelu", "Abs", "Exp", "Neg", "Max"}, ops
    assert ops <= COMMON_OPS, ops
    rng = np.random.default_rng(0)
    grid = np.concatenate([np.linspace(-12, 12, 20_001), rng.standard_normal(20_000) * 3]).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": grid.reshape(-1, 1)})[0].ravel().astype(np.float64)
    want = torch.nn.functional.gelu(torch.from_numpy(grid).double()).numpy()
    assert np.all(np.abs(got - want) <= 1e-6 * np.maximum(1.0, np.abs(grid)))
    assert math.isclose(float(got[10_000]), 0.0, abs_tol=1e-9)  # GELU(0) = 0 exactly enough


@pytest.mark.parametrize("arch", MOBILE_ARCHS)
def test_mobile_graph_fixed_shapes_op_set_and_metadata(exports: dict, arch: str) -> None:
    result = exports[arch]
    folder = result.out_dir / mobile.MOBILE_DIR
    assert sorted(p.name for p in folder.iterdir()) == ["required_operators.config", "step.onnx", "step.ort"]
    model = onnx.load(folder / "step.onnx")
    onnx.checker.check_model(model, full_check=True)
    ops = Counter(n.op_type for n in model.graph.node)
    assert set(ops) <= COMMON_OPS, ops
    gathers = [n for n in model.graph.node if n.op_type == "Gather"]  # the embedding, or token tables (token_tables.py)
    assert gathers and all(n.input[1] == INPUT_IDS for n in gathers) and model.graph.node[0].op_type == "Gather"
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*model.graph.input]}
    assert dims[INPUT_IDS] == [1] and all(d[0] == 1 and all(d) for d in dims.values())
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[mobile.TARGET_KEY] == "mobile"
    info = parse_metadata(meta, "mobile/step.onnx")
    step = parse_metadata({p.key: p.value for p in onnx.load(result.paths["step"]).metadata_props}, "step.onnx")
    fixed = tuple(dataclasses.replace(s, shape=(1, *s.shape[1:])) for s in step.states)  # the truth: [1, ...]
    assert info == dataclasses.replace(step, states=fixed, ids_dtype="int32", fixed_batch=1)
    assert step.ids_dtype == "int64" and step.fixed_batch is None


@pytest.mark.parametrize("arch", MOBILE_ARCHS)
def test_mobile_graph_verified_and_runs_like_the_step_graph(exports: dict, arch: str) -> None:
    result = exports[arch]
    section = result.manifest["mobile"]
    assert {c["name"] for c in section["verification"]} == {"mobile_vs_torch_fp64", "mobile_vs_parallel"}
    assert all(c["passed"] and c["max_abs_diff"] <= 1e-4 for c in section["verification"])
    step = ort.InferenceSession(str(result.paths["step"]), providers=["CPUExecutionProvider"])
    mob = {
        ext: ort.InferenceSession(str(result.out_dir / "mobile" / f"step.{ext}"), providers=["CPUExecutionProvider"])
        for ext in ("onnx", "ort")
    }
    rng = np.random.default_rng(5)
    states = [rng.standard_normal([1, *i.shape[1:]]).astype(np.float32) for i in step.get_inputs()[1:]]
    names = [i.name for i in step.get_inputs()]
    for t in range(30):
        ids = rng.integers(0, 20, size=(1,))
        want = step.run(None, dict(zip(names, [ids, *states], strict=True)))
        for sess in mob.values():
            got = sess.run(None, dict(zip(names, [ids.astype(np.int32), *states], strict=True)))
            assert max(float(np.abs(a - b).max()) for a, b in zip(got, want, strict=True)) <= 1e-4, t
        states = want[1:]


@pytest.mark.parametrize("arch", MOBILE_ARCHS)
def test_checker_puts_the_fp32_graph_in_one_partition_per_ep(exports: dict, arch: str) -> None:
    checker = exports[arch].manifest["mobile"]["checker"]["fp32"]
    assert set(checker) == set(mobile.EPS)
    for ep, fig in checker.items():
        assert fig["partitions"] == 1, (ep, fig)
        assert fig["largest_partition_share"] >= 0.95, (ep, fig)
        assert set(fig["unsupported_ops"]) <= {"ai.onnx:Gather"}, (ep, fig)  # MLProgram has no Gather
    assert checker["NNAPI"]["supported_nodes"] == checker["NNAPI"]["nodes"]
    manifest = json.loads((exports[arch].out_dir / MANIFEST).read_text())
    assert manifest["mobile"]["checker"] == json.loads(json.dumps(exports[arch].manifest["mobile"]["checker"]))


class _Calibration(CalibrationDataReader):
    """A few random batch-1 feeds for the mobile graph (ids int32, states N(0, 1))."""

    def __init__(self, sess: ort.InferenceSession, n: int = 8) -> None:
        self.rng = np.random.default_rng(0)
        self.inputs = sess.get_inputs()
        self.left = n

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.left == 0:
            return None
        self.left -= 1
        return {
            i.name: self.rng.integers(0, 20, size=i.shape).astype(np.int32)
            if i.type == "tensor(int32)"
            else self.rng.standard_normal(i.shape).astype(np.float32)
            for i in self.inputs
        }


def test_qdq_int8_variant_in_the_ort_package_and_one_nnapi_partition(exports: dict, tmp_path) -> None:
    result = exports["mingru"]
    folder = result.out_dir / mobile.MOBILE_DIR
    src = folder / "step.onnx"
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    qdq_recipe = PRESETS["int8-qdq"]  # the settings the int8-qdq recipe uses: 7-bit per-channel weights, which
    quantize_static(  # compute the same on every CPU (full 8-bit s8 weights saturate x86 AVX2's int16 sums)
        str(src),
        str(folder / "step.int8-qdq.onnx"),
        _Calibration(sess),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=qdq_recipe.per_channel,
        reduce_range=qdq_recipe.reduce_range,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    section = mobile.package(result.out_dir)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["required_operators.config", "step.onnx", "step.ort", "step.int8-qdq.onnx", "step.int8-qdq.ort"]
    )
    config = (folder / "required_operators.config").read_text()
    assert "QuantizeLinear" in config and "DequantizeLinear" in config and "/tmp" not in config
    qdq = section["checker"]["int8-qdq"]
    assert qdq["NNAPI"]["partitions"] == 1 and qdq["NNAPI"]["largest_partition_share"] >= 0.95, qdq["NNAPI"]
    for ep in ("CoreML MLProgram", "CoreML NeuralNetwork"):  # neither CoreML op list has Q/DQ
        assert set(qdq[ep]["unsupported_ops"]) <= {
            "ai.onnx:QuantizeLinear",
            "ai.onnx:DequantizeLinear",
            "ai.onnx:Gather",
        }
    manifest = json.loads((result.out_dir / MANIFEST).read_text())
    assert set(manifest["mobile"]["checker"]) == {"fp32", "int8-qdq"}
    assert manifest["mobile"]["verification"] == result.manifest["mobile"]["verification"]


def test_reexport_without_mobile_removes_the_mobile_folder(tmp_path) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", "mingru", seed=4)
    out = tmp_path / "out"
    export_model(ckpt, out, max_seq_len=1024, target="mobile", simplify=False, verify=False)
    (out / "mobile" / "step.int8-qdq.onnx").write_bytes(b"a variant of the old graph")  # not in the ledger
    with pytest.raises(RnnedgeError, match="cannot prove it wrote it"):
        export_model(ckpt, out, max_seq_len=1024, target="mobile", verify=False)
    again = export_model(ckpt, out, max_seq_len=1024, target="mobile", verify=False, overwrite=True)
    assert again.manifest["kept_not_ours"] == ["mobile/step.int8-qdq.onnx"]  # kept: not provably rnnedge's
    (out / "mobile" / "step.int8-qdq.onnx").unlink()
    assert sorted(p.name for p in (out / "mobile").iterdir()) == ["required_operators.config", "step.onnx", "step.ort"]
    plain = export_model(ckpt, out, max_seq_len=1024, verify=False)
    assert not (out / "mobile").exists()
    assert {"mobile/step.onnx", "mobile/step.ort", "mobile/required_operators.config"} <= set(
        plain.manifest["removed_stale"]
    )


def test_unknown_target_is_one_clear_error(tmp_path) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", "mingru")
    with pytest.raises(RnnedgeError, match="unknown export target 'tpu'"):
        export_model(ckpt, tmp_path / "out", target="tpu")
    assert not (tmp_path / "out").exists()
    res = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(tmp_path / "o2"), "--target", "tpu"])
    assert res.exit_code == 1 and res.output.strip().startswith("rnnedge: error: unknown export target")


def test_step_session_streams_the_mobile_graph(exports: dict) -> None:
    """The runtime feeds a mobile graph's int32 ids itself: same text, same logits as step.onnx."""
    from rnnedge.runtime import StepSession

    result = exports[MOBILE_ARCHS[0]]
    full = StepSession(result.paths["step"])
    mobile = StepSession(result.out_dir / "mobile" / "step.onnx")
    for token in [3, 1, 4, 1, 5, 9, 2, 6]:
        want, got = full.feed(token), mobile.feed(token)
        assert np.abs(want - got).max() <= 1e-4
