"""The qnn-htp target: the HTP step graph (export --target qnn-htp), its recipes (a16w8, a8w8, htp-fp16),
and runs on Qualcomm's HTP simulator (onnxruntime-qnn). Tests that run the simulator skip, with the
reason, where the wheel is absent (it is x86_64 Linux / Windows only); streams are short (<= 200 steps)."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.errors import ConfigError, DependencyError, GraphError, RnnedgeError
from rnnedge.exporter import export_model
from rnnedge.exporter.qnn_htp_graph import forbidden, to_htp_ops
from rnnedge.graphmeta import MANIFEST
from rnnedge.inference import open_graph
from rnnedge.quantization import PRESETS, quantize_export
from rnnedge.quantization.recipes import QnnQdq
from rnnedge.targets import graph_folder, qnn_htp, target_spec
from rnnedge.training.checkpoint import save_checkpoint
from tests.conftest import TEXT, tiny_model
from tests.test_export import VOCAB

HTP = target_spec("qnn-htp").probe()
needs_htp = pytest.mark.skipif(not HTP.ok, reason=f"qnn-htp cannot run here: {HTP.reason}")
CORPUS = "".join(c for c in TEXT.lower() if c in VOCAB.chars)  # only characters of the tiny vocabulary
FAST = {"calib_steps": 64, "calib_streams": 2, "calib_feeds": 32, "verify_steps": 24}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("qnn")
    (root / "text.txt").write_text(CORPUS, encoding="utf-8")
    out = {"text": root / "text.txt"}
    for arch in ("mingru", "minlstm"):
        ckpt = save_checkpoint(
            root / f"ck_{arch}", tiny_model(arch, len(VOCAB), seed=2), VOCAB, val_loss=1.0, training={}
        )
        out[arch] = export_model(ckpt, root / f"ex_{arch}", max_seq_len=256, target="qnn-htp").out_dir
    ckpt = root / "ck_mingru"
    out["batch2"] = export_model(ckpt, root / "ex_b2", max_seq_len=256, target="qnn-htp", batch=2).out_dir
    out["plain"] = export_model(ckpt, root / "ex_plain", max_seq_len=256).out_dir
    return out


def _gelu_pow_model() -> onnx.ModelProto:
    """y = x·(1 + erf(x/√2))·0.5 (exact GELU as torch traces it) and z = Pow(2, x): what the HTP refuses."""
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
             (("sqrt2", math.sqrt(2.0)), ("one", 1.0), ("half", 0.5), ("two", 2.0))]  # fmt: skip
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["x", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
        helper.make_node("Pow", ["two", "x"], ["z"]),
    ]
    shape = [1, 8]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("y", "z")],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_erf_gelu_becomes_gelu_and_scalar_pow_becomes_exp() -> None:
    model = _gelu_pow_model()
    assert len(forbidden(model)) == 2  # Erf and the scalar-base Pow
    new, counts = to_htp_ops(onnx.ModelProto.FromString(model.SerializeToString()))
    ops = [n.op_type for n in new.graph.node]
    assert counts["exp_not_pow"] == 1 and "Gelu" in ops and "Exp" in ops, ops
    assert not {"Erf", "Pow"} & set(ops) and not forbidden(new)
    x = np.linspace(-6, 6, 8, dtype=np.float32).reshape(1, 8)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = ort.InferenceSession(new.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["mingru", "minlstm"])
def test_export_writes_a_fixed_batch_graph_without_erf(exports: dict, arch: str) -> None:
    folder = exports[arch] / "qnn-htp"
    model = onnx.load(str(folder / "step.onnx"))
    assert not forbidden(model) and "Gelu" in {n.op_type for n in model.graph.node}
    assert next(o.version for o in model.opset_import if o.domain == "") == 20
    for value in [*model.graph.input, *model.graph.output]:
        assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim), value.name
        assert value.type.tensor_type.shape.dim[0].dim_value == 1
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["rnnedge.target"] == "qnn-htp" and meta["rnnedge.fixed_batch"] == "1"
    manifest = json.loads((exports[arch] / MANIFEST).read_text())
    assert manifest["qnn_htp"]["graph"]["nodes"] == len(model.graph.node)
    assert all(c["passed"] for c in manifest["qnn_htp"]["verification"])
    assert json.loads((folder / MANIFEST).read_text())["target"] == "qnn-htp"


def test_fixed_batch_graph_runs_many_streams_like_the_standard_one(exports: dict) -> None:
    """B streams through a batch-N graph run in B/N calls, with the standard step graph's results."""
    for key, n in (("mingru", 1), ("batch2", 2)):
        htp = open_graph(exports[key] / "qnn-htp" / "step.onnx", "step")
        std = open_graph(exports[key] / "step.onnx", "step")
        assert htp.fixed_batch == n and std.fixed_batch is None
        ids = np.array([1, 5, 7, 2], dtype=np.int64)  # (4,)
        sa, sb = htp.zero_states(4), std.zero_states(4)
        for _ in range(5):
            la, sa = htp.run(ids, sa)
            lb, sb = std.run(ids, sb)
            np.testing.assert_allclose(la, lb, atol=1e-4)


def test_recipes_and_target_wiring() -> None:
    assert PRESETS["a16w8"].activation_bits == 16 and PRESETS["a8w8"].activation_bits == 8
    assert not PRESETS["a16w8"].keeps_state_float and PRESETS["a16w8"].graphs == ("step",)
    with pytest.raises(ConfigError, match="8 or 16"):
        QnnQdq(name="a12w8", activation_bits=12)
    with pytest.raises(ConfigError, match="step graph only"):
        QnnQdq(name="x", graphs=("parallel",))
    spec = target_spec("qnn-htp")
    assert spec.runs == "host" and spec.open is not None and spec.folder == "qnn-htp"
    assert spec.session_config["session.disable_cpu_ep_fallback"] == "1"
    assert spec.recipes[0] == "a16w8"


def test_quantize_a_plain_export_says_to_export_for_the_target(exports: dict) -> None:
    with pytest.raises(GraphError, match="--target qnn-htp"):
        quantize_export(exports["plain"], "a16w8", calib_text=exports["text"], **FAST)


def test_absent_wheel_is_one_line_with_the_install_hint(monkeypatch: pytest.MonkeyPatch, exports: dict) -> None:
    qnn_htp._probe.cache_clear()
    monkeypatch.setattr(qnn_htp, "_wheel_version", lambda: None)
    try:
        why = target_spec("qnn-htp").probe()
        assert not why.ok and "rnnedge[npu]" in why.reason
        with pytest.raises(DependencyError, match="qnn-htp cannot run here"):
            open_graph(exports["mingru"] / "qnn-htp" / "step.onnx", "step", "qnn-htp")
    finally:
        monkeypatch.undo()
        qnn_htp._probe.cache_clear()


@needs_htp
def test_a_node_the_htp_cannot_take_is_an_error_naming_it() -> None:
    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"], name="the_erf"), helper.make_node("Sigmoid", ["y"], ["z"], name="sig")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(GraphError, match="Erf the_erf"):
        qnn_htp.open_session(model.SerializeToString(), fp16=True)


@needs_htp
def test_a16w8_on_the_htp_state_quantized_verified_with_context_binary(exports: dict) -> None:
    result = quantize_export(exports["mingru"], "a16w8", calib_text=exports["text"], **FAST)
    folder = exports["mingru"] / "qnn-htp"
    assert result.paths["step"] == folder / "step.a16w8.onnx"
    htp = result.graphs["step"]["htp"]
    assert htp["verified"] and htp["steps"] == FAST["verify_steps"]
    assert htp["vs_cpu_same_graph"]["max_abs_logit_diff"] < 0.5  # the HTP computes the QDQ graph's numbers
    assert abs(htp["loss_delta"]) < 0.05
    clip = htp["state_clip"]
    assert clip["measured"] and 0 <= clip["steps_with_a_clip"] <= clip["steps"]
    model = onnx.load(str(result.paths["step"]))
    states = [i.name for i in model.graph.input if i.name.startswith("state_in")]
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert set(states) <= quantized  # the recurrent state itself is quantized
    manifest = json.loads((folder / MANIFEST).read_text())
    ctx = manifest["variants"]["a16w8"]["graphs"]["step"]["htp"]["context_binary"]
    assert ctx["file"] == "step.a16w8.ctx.onnx" and (folder / ctx["file"]).stat().st_size == ctx["size_bytes"]
    from rnnedge.quantization.on_htp import check_context

    ids = np.frombuffer(b"\x01\x05\x07\x02\x03\x09\x04\x00\x08\x06\x02\x01", dtype=np.uint8).astype(np.int64)
    check_context(result.paths["step"].read_bytes(), (folder / ctx["file"]).read_bytes(), ids)


@needs_htp
def test_a8w8_minlstm_and_htp_fp16_run_on_the_htp(exports: dict) -> None:
    a8 = quantize_export(exports["minlstm"], "a8w8", calib_text=exports["text"], **FAST)
    assert a8.graphs["step"]["htp"]["verified"]
    fp16 = quantize_export(exports["minlstm"], "htp-fp16", eval_text=exports["text"], verify_steps=8)
    htp = fp16.graphs["step"]["htp"]
    assert htp["vs_fp32"]["max_abs_logit_diff"] < 0.05 and not htp["state_clip"]["measured"]


@needs_htp
def test_drift_eval_and_generate_with_provider_qnn_htp(exports: dict, tmp_path) -> None:
    folder = exports["mingru"]
    if not (folder / "qnn-htp" / "step.a16w8.onnx").is_file():
        quantize_export(folder, "a16w8", calib_text=exports["text"], **{**FAST, "verify_steps": 0})
    assert graph_folder(folder, "qnn-htp") == folder / "qnn-htp" and graph_folder(folder, "cpu") == folder
    runner = CliRunner()
    args = ["drift", str(folder), "--data", str(exports["text"]), "--variant", "a16w8", "--provider", "qnn-htp"]
    res = runner.invoke(
        app, [*args, "--steps", "40", "--streams", "2", "--gen-steps", "10", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["settings"]["target"]["target"] == "qnn-htp"
    short = tmp_path / "short.txt"
    short.write_text(CORPUS[:60], encoding="utf-8")
    res = runner.invoke(app, ["eval", str(folder), "--data", str(short), "--variant", "a16w8", "--provider", "qnn-htp"])
    assert res.exit_code == 0 and "ran on qnn-htp" in res.output, res.output
    res = runner.invoke(
        app, ["generate", str(folder), "--variant", "a16w8", "--provider", "qnn-htp", "-n", "8", "-p", "ab"]
    )
    assert res.exit_code == 0 and len(res.output.strip()) >= 2, res.output


def test_re_export_removes_the_older_models_htp_variants(exports: dict, tmp_path) -> None:
    """A variant of the older model never stays beside a re-exported graph (qnn-htp/ is rnnedge's)."""
    out = tmp_path / "ex"
    ckpt = exports["mingru"].parent / "ck_mingru"
    export_model(ckpt, out, max_seq_len=256, target="qnn-htp", verify=False)
    folder = out / "qnn-htp"
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    export_model(ckpt, out, max_seq_len=256, target="qnn-htp", verify=False)  # its own files: replaced
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "notes.txt", "step.onnx"]
    # Variant-named files rnnedge cannot prove it wrote (hand-made here) are never deleted: refused, or
    # kept and listed with --overwrite (rnnedge/ownership.py); so no old variant stays unannounced.
    (folder / "step.a16w8.onnx").write_bytes((folder / "step.onnx").read_bytes())
    with pytest.raises(RnnedgeError, match="cannot prove it wrote it"):
        export_model(ckpt, out, max_seq_len=256, target="qnn-htp", verify=False)
    export_model(ckpt, out, max_seq_len=256, target="qnn-htp", verify=False, overwrite=True)
    assert "qnn-htp/step.a16w8.onnx" in json.loads((out / MANIFEST).read_text())["kept_not_ours"]
    (folder / "step.a16w8.onnx").unlink()
    export_model(ckpt, out, max_seq_len=256, verify=False)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # a user's file is never removed
    manifest = json.loads((out / MANIFEST).read_text())
    assert "step.onnx" in manifest["qnn_htp_removed_stale"] and "qnn_htp" not in manifest


def test_quantize_cli_defaults_to_a16w8_in_the_htp_folder(exports: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnedge._cli import quantize as cli

    seen = {}

    def fake(folder, method, **kwargs):
        seen[str(folder)] = method
        raise ConfigError("stop here")

    monkeypatch.setattr("rnnedge.quantization.quantize_export", fake)
    runner = CliRunner()
    for folder in (exports["mingru"] / "qnn-htp", exports["mingru"]):
        runner.invoke(app, ["quantize", str(folder), "--calib", str(exports["text"])])
    assert seen == {str(exports["mingru"] / "qnn-htp"): "a16w8", str(exports["mingru"]): "int8-dynamic"}
    assert cli._folder_target(exports["plain"]) is None
