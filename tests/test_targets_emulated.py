"""Variants verified on the CPUs that run them: x86 AVX2-only and ARM64, emulated with qemu-user.

Each test skips, with the reason, where its emulator cannot run (no qemu-user-static; for cpu-arm64 also
no sysroot: `rnnedge targets setup cpu-arm64`). .ci/run installs qemu and builds the sysroot.
Only ONNX Runtime runs emulated (in targets/worker.py); torch builds the tiny export on the host.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from rnnedge.graphmeta import MANIFEST, graph_file
from rnnedge.inference import open_graph, open_session
from rnnedge.ortformat import TOLERANCE, ort_parity
from rnnedge.quantization import quantize_export
from rnnedge.targets import target_spec
from rnnedge.targets.isa import cpu_flags
from tests.test_quantize_support import TEXT, make_export

AVX2, ARM64 = "cpu-x86-avx2", "cpu-arm64"
HOST_EXACT = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())  # int32 dot products on this CPU


def needs(*names: str) -> None:
    for name in names:
        why = target_spec(name).probe()
        if not why.ok:
            pytest.skip(f"{name} cannot run here: {why.reason}")


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("texts")
    (root / "calib.txt").write_text(TEXT)
    (root / "eval.txt").write_text("\n".join(reversed(TEXT.splitlines()))[:1500])
    return {"calib": root / "calib.txt", "eval": root / "eval.txt", "root": root}


def saturating_probe() -> bytes:
    """u8 [255, 255] · s8 [127, 127]: exact int32 sum 64770; x86 AVX2 sums the pair in saturating int16."""
    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])
    b = numpy_helper.from_array(np.array([[127], [127], [0], [0]], dtype=np.int8), "b")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "probe", [a], [y], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def probe_sum(provider: str) -> int:
    session = open_session(saturating_probe(), provider, threads=1)
    try:
        return int(session.run(None, {"a": np.array([[255, 255, 0, 0]], dtype=np.uint8)})[0][0, 0])
    finally:
        getattr(session, "close", lambda: None)()


def test_each_emulated_cpu_computes_its_own_int8_kernels() -> None:
    """Bit-faithful: qemu's Haswell reports AVX2 only, so ORT dispatches the VPMADDUBSW kernel and saturates."""
    needs(AVX2)
    assert probe_sum(AVX2) == 32767
    assert probe_sum("cpu") == (64770 if HOST_EXACT else 32767)
    needs(ARM64)
    assert probe_sum(ARM64) == 64770  # SDOT/UDOT: exact int32


def step_logits(path: Path, provider: str, tokens: np.ndarray) -> np.ndarray:
    """(steps, V) logits of one stream fed `tokens`, state carried from zero."""
    graph = open_graph(path, "step", provider, threads=1)
    states, out = graph.zero_states(1), []
    for t in tokens:
        logits, states = graph.run(np.array([t]), states)
        out.append(logits[0])
    getattr(graph.session, "close", lambda: None)()
    return np.stack(out)


def test_int8_dynamic_holds_on_every_cpu_and_the_old_signed_weights_do_not(texts, tmp_path) -> None:
    """The preset (uint8 weights per channel) gives the same logits on AVX2 as on the host; rnnedge 0.1's
    signed 8-bit weights do not (on a VNNI host), which is why the preset changed."""
    needs(AVX2)
    d = make_export(tmp_path / "mingru", "mingru")
    res = quantize_export(d, eval_text=texts["eval"], verify_on_targets=(AVX2,))
    on = res.graphs["step"]["targets"][AVX2]
    assert on["loss_delta"] < 0.05 and abs(on["loss_delta"] - on["loss_delta_host_same_chars"]) < 1e-3, on
    entry = json.loads((d / MANIFEST).read_text())["variants"]["int8-dynamic"]["graphs"]["step"]
    assert [v["target"] for v in entry["verified_on"]] == ["cpu-x86", AVX2] and entry["verified_on"][1]["emulated"]
    tokens = np.random.default_rng(0).integers(0, 20, 120)
    new = d / graph_file("step", "int8-dynamic")
    assert np.abs(step_logits(new, AVX2, tokens) - step_logits(new, "cpu", tokens)).max() < 1e-3
    if HOST_EXACT:
        quantize_export(d, "int8-dynamic", eval_text=texts["eval"], weight_type="int8", per_channel=False)
        old = step_logits(new, AVX2, tokens) - step_logits(new, "cpu", tokens)
        assert np.abs(old).max() > 0.01, "signed 8-bit weights computed the same on AVX2: the control proves nothing"


def test_int8_qdq_onnx_and_ort_agree_on_avx2_and_arm64(texts, tmp_path) -> None:
    """The failure a fresh AVX2 set-up hit: .ort vs .onnx of the QDQ variant 1.25 apart. 7-bit weights fix it."""
    needs(AVX2)
    d = make_export(tmp_path / "mingru", "mingru", ort_format=True)
    res = quantize_export(
        d, "int8-qdq", calib_text=texts["calib"], eval_text=texts["eval"], graphs=("step",), verify_on_targets=(AVX2,)
    )
    assert res.graphs["step"]["targets"][AVX2]["loss_delta"] < 0.05
    onnx_bytes = (d / "step.int8-qdq.onnx").read_bytes()
    ort_bytes = (d / "step.int8-qdq.ort").read_bytes()
    assert ort_parity(onnx_bytes, ort_bytes, AVX2) < TOLERANCE
    needs(ARM64)
    assert ort_parity(onnx_bytes, ort_bytes, ARM64) < TOLERANCE


def test_drift_and_eval_run_the_variant_on_arm64(texts, tmp_path) -> None:
    """`--provider cpu-arm64` on eval and drift: the variant computed by the ARM64 kernels, reported as such."""
    needs(ARM64)
    from typer.testing import CliRunner

    from rnnedge.cli import app

    d = make_export(tmp_path / "mingru", "mingru")
    quantize_export(d, eval_text=texts["eval"])
    runner = CliRunner()
    ev = runner.invoke(app, ["eval", str(d), "--data", str(texts["eval"]), "--variant", "int8-dynamic",
                             "--provider", ARM64, "--json"])
    assert ev.exit_code == 0, ev.output
    got = json.loads(ev.output.strip().splitlines()[-1])
    assert got["target"]["target"] == ARM64 and "exact int32" in got["target"]["int8_path"]
    rep = tmp_path / "rep"
    dr = runner.invoke(app, ["drift", str(d), "--data", str(texts["calib"]), "--out", str(rep), "--variant",
                             "int8-dynamic", "--provider", ARM64, "--steps", "200", "--streams", "2",
                             "--gen-steps", "50"])
    assert dr.exit_code == 0, dr.output
    assert "ran on cpu-arm64" in dr.output
    report = json.loads((rep / "report.json").read_text())
    assert report["settings"]["target"]["target"] == ARM64
    assert "The variant ran on cpu-arm64" in (rep / "report.md").read_text()
