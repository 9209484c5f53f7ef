"""The GPU paths: provider options, Memcpy counts, device-resident step state, the fused scan on CUDA.

Tests marked `gpu` need CUDA (torch's, and onnxruntime-gpu's CUDA EP for the ORT ones) and skip
without it; `benchmarks/gpu.sh` runs them on a GPU machine. The unmarked tests check on CPU
everything that does not need a device: what rnnedge passes to ONNX Runtime, the Memcpy counter, and
the device-binding logic of StepSession run with OrtValues on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.errors import DependencyError, GraphError, RnnedgeError
from rnnedge.inference import ProviderChoice, count_memcpy, memcpy_nodes, open_graph, open_session
from rnnedge.inference.cuda_check import cuda_provider_problem
from rnnedge.runtime import ParallelSession, StepSession, cuda
from rnnedge.runtime import step as step_module
from tests.conftest import TEXT
from tests.test_runtime_graphs import VOCAB, make_export

CUDA_EP = "CUDAExecutionProvider"
HAS_CUDA = torch.cuda.is_available()
HAS_ORT_CUDA = HAS_CUDA and cuda_provider_problem() is None  # listed is not enough: it must load
torch_gpu = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
ort_gpu = pytest.mark.skipif(not HAS_ORT_CUDA, reason="no CUDA device or no onnxruntime-gpu CUDA EP")


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """Tiny mingru (one state per layer), lstm (h and c) and transformer (KV cache, int64 position) exports."""
    archs = ("mingru", "lstm", "transformer")
    return {arch: make_export(tmp_path_factory.mktemp(f"gpu_{arch}"), arch) for arch in archs}


# ---- provider options (CPU) -------------------------------------------------------------------


@pytest.fixture
def fake_cuda_build(monkeypatch):
    """onnxruntime claims CUDA and TensorRT; InferenceSession records its arguments instead of loading."""
    calls = []

    class Recorded:
        def __init__(self, source, sess_options=None, providers=None):
            calls.append({"providers": providers, "options": sess_options})

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", CUDA_EP, "CPUExecutionProvider"]
    )
    monkeypatch.setattr("rnnedge.inference.sessions.ort.InferenceSession", Recorded)
    return calls


def test_cuda_options_passed_to_onnxruntime(fake_cuda_build, exports) -> None:
    path = exports["mingru"] / "step.onnx"
    open_session(path, "cuda")
    open_session(path, "cuda", tf32=True)
    open_session(path, ProviderChoice("cuda", tf32=True, cuda_graph=True, device_id=1))
    open_session(path, ProviderChoice("tensorrt", device_id=2))
    open_session(path, "cpu")
    got = [c["providers"] for c in fake_cuda_build]
    assert got[0] == [(CUDA_EP, {"use_tf32": "0"}), "CPUExecutionProvider"]  # TF32 off unless asked
    assert got[1] == [(CUDA_EP, {"use_tf32": "1"}), "CPUExecutionProvider"]
    assert got[2] == [(CUDA_EP, {"use_tf32": "1", "enable_cuda_graph": "1", "device_id": "1"}), "CPUExecutionProvider"]
    assert got[3] == [
        ("TensorrtExecutionProvider", {"device_id": "2"}),
        (CUDA_EP, {"use_tf32": "0", "device_id": "2"}),
        "CPUExecutionProvider",
    ]
    assert got[4] == ["CPUExecutionProvider"]


def test_tf32_flag_reaches_the_sessions_from_the_cli(fake_cuda_build, monkeypatch, exports, tmp_path) -> None:
    seen = {}

    def fake_evaluate(path, text, variant, on_unknown, providers, threads=None, progress=None):
        seen["providers"] = providers
        return {"loss_nats": 1.0, "bits_per_char": 1.4, "chars": 10, "graph": "parallel.onnx"}

    monkeypatch.setattr("rnnedge.runtime.evaluate.evaluate_export", fake_evaluate)
    data = tmp_path / "t.txt"
    data.write_text(TEXT[:200])
    runner = CliRunner()
    for flags, want in ((["--tf32"], True), ([], False)):
        result = runner.invoke(app, ["eval", str(exports["mingru"]), "--data", str(data), "--provider", "cuda", *flags])
        assert result.exit_code == 0, result.output
        assert seen["providers"] == ProviderChoice("cuda", tf32=want)
    refused = runner.invoke(app, ["eval", str(exports["mingru"]), "--data", str(data), "--tf32"])
    assert refused.exit_code == 1 and "--tf32 applies to the cuda and tensorrt providers" in refused.output


def test_provider_choice_rejects_bad_options() -> None:
    for kwargs, message in (
        ({"name": "rocm"}, "unknown provider"),
        ({"name": "cpu", "tf32": True}, "--tf32"),
        ({"name": "tensorrt", "cuda_graph": True}, "CUDA graphs"),
        ({"name": "cuda", "device_id": -1}, "device_id"),
    ):
        with pytest.raises(RnnedgeError, match=message):
            ProviderChoice(**kwargs)


@pytest.mark.skipif(HAS_ORT_CUDA, reason="this onnxruntime has the CUDA EP")
def test_missing_cuda_build_is_one_line(exports) -> None:
    with pytest.raises(DependencyError, match=r"rnnedge\[gpu\]"):
        StepSession(exports["mingru"], providers=ProviderChoice("cuda", cuda_graph=True))


# ---- Memcpy counter (CPU) ---------------------------------------------------------------------


def test_memcpy_counter_on_a_hand_built_graph(tmp_path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    body = helper.make_graph(
        [helper.make_node("MemcpyToHost", ["x"], ["t"], name="copy_back"), helper.make_node("Relu", ["t"], ["y"])],
        "body",
        [x],
        [y],
    )
    nodes = [
        helper.make_node("MemcpyFromHost", ["x"], ["a"], name="Memcpy"),
        helper.make_node("Identity", ["a"], ["b"], name="MemcpyToHost_lookalike"),  # a name, not an op type
        helper.make_node("MemcpyToHost", ["b"], ["c"], name="Memcpy_token_1"),
        helper.make_node("If", ["cond"], ["y"], then_branch=body, else_branch=body),
    ]
    graph = helper.make_graph(nodes, "g", [x, helper.make_tensor_value_info("cond", TensorProto.BOOL, [])], [y])
    path = tmp_path / "placed.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert count_memcpy(path) == {"MemcpyFromHost": 1, "MemcpyToHost": 3, "total": 4}
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(GraphError, match="not a readable ONNX model"):
        count_memcpy(path)


def test_cpu_sessions_place_no_memcpy(exports) -> None:
    folder = exports["mingru"]
    report = cuda.memcpy_report({"fp32": {k: folder / f"{k}.onnx" for k in ("step", "parallel")}}, "cpu")
    assert report == {"fp32": {k: {"MemcpyFromHost": 0, "MemcpyToHost": 0, "total": 0} for k in ("step", "parallel")}}
    assert memcpy_nodes((folder / "step.onnx").read_bytes(), None)["total"] == 0


# ---- device-resident step state, run with OrtValues on the CPU --------------------------------


@pytest.mark.parametrize("arch", ["mingru", "lstm", "transformer"])
def test_device_binding_behaves_like_host_buffers(arch, exports, monkeypatch) -> None:
    host = StepSession(exports[arch], batch=3)
    monkeypatch.setattr(step_module, "device_step", lambda graph, batch: cuda.DeviceStep(graph, batch, "cpu"))
    bound = StepSession(exports[arch], batch=3)
    assert bound.describe()["state_on"] == "cpu" and host.describe()["state_on"] == "host"
    ids = np.random.default_rng(0).integers(0, len(VOCAB), size=(3, 30))
    for t in range(20):
        np.testing.assert_array_equal(bound.feed(ids[:, t]), host.feed(ids[:, t]))
    np.testing.assert_array_equal(bound.feed_sequence(ids[0, 20:]), host.feed_sequence(ids[0, 20:]))
    saved = bound.state
    assert all(np.array_equal(saved[n], host.state[n]) for n in saved)
    bound.reset(stream=1)
    host.reset(stream=1)
    after = bound.state
    assert all(not after[n][1].any() and after[n][0].any() for n in after)
    np.testing.assert_array_equal(bound.feed(ids[:, 0]), host.feed(ids[:, 0]))
    bound.state = saved
    host.state = saved
    np.testing.assert_array_equal(bound.feed(ids[:, 1]), host.feed(ids[:, 1]))
    bound.reset()
    assert all(not v.any() for v in bound.state.values()) and bound.steps == 0
    with pytest.raises(RnnedgeError, match="out of range"):
        bound.feed_sequence([1, len(VOCAB)])
    assert bound.steps == 0  # nothing fed before the check


def test_cuda_graph_bindings_get_their_own_graph_ids(exports) -> None:
    graph = open_graph(exports["mingru"] / "step.onnx", "step")
    graph.__dict__["cuda_graph"] = True  # as a session opened with ProviderChoice(cuda_graph=True) reports
    device = cuda.DeviceStep(graph, 2, "cpu")
    ids = [o.get_run_config_entry("gpu_graph_id") for o in device._options if o is not None]
    assert ids == list(cuda.GRAPH_IDS)
    with pytest.raises(RnnedgeError, match="CUDA graphs"):
        graph.run(np.zeros(2, dtype=np.int64), graph.zero_states(2))


# ---- on a GPU ---------------------------------------------------------------------------------


def _fp64_steps(layer, x, h0):
    """The sequential definition: fp64, one step at a time (the cell, T = 1)."""
    state, out = (h0,), []
    for t in range(x.shape[1]):
        y, state = layer(x[:, t : t + 1], state)
        out.append(y)
    return torch.cat(out, dim=1), state[0]


@pytest.mark.gpu
@torch_gpu
@pytest.mark.parametrize("arch", ["mingru", "minlstm"])
def test_fused_scan_matches_fp64_sequential_outputs_and_gradients(arch) -> None:
    pytest.importorskip("fla.ops.hgrn")
    from rnnedge.models.fused_scan import FUSED, choose_scan
    from tests.conftest import tiny_model

    layer = tiny_model(arch, d_model=64).blocks[0].mixer.cuda()
    ref_layer = tiny_model(arch, d_model=64).blocks[0].mixer.cuda().double()
    x = torch.randn(4, 777, 64, device="cuda")
    assert choose_scan(x, None) == FUSED
    for carried in (False, True):  # zero-like fresh state to the kernel / a state that needs its gradient
        h0 = torch.randn(4, layer.state_shapes[0][0], device="cuda").abs()  # (B, H)
        x32, h32 = x.clone().requires_grad_(), h0.clone().requires_grad_(carried)
        x64, h64 = x.double().requires_grad_(), h0.double().requires_grad_(carried)
        y, (h_last,) = layer(x32, (h32,))  # the fused kernel, fp32
        y_ref, h_ref = _fp64_steps(ref_layer, x64, h64)
        assert (y.double() - y_ref).abs().max() < 1e-4 and (h_last.double() - h_ref).abs().max() < 1e-4
        weights = torch.randn_like(y_ref)
        (y.double() * weights).sum().backward()
        (y_ref * weights).sum().backward()
        pairs = [(x32.grad, x64.grad), *zip(layer.parameters(), ref_layer.parameters(), strict=True)]
        if carried:
            pairs.append((h32.grad, h64.grad))
        for got, ref in pairs:
            got, ref = (got.grad, ref.grad) if isinstance(got, torch.nn.Parameter) else (got, ref)
            assert (got.double() - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())
        layer.zero_grad()
        ref_layer.zero_grad()


@pytest.mark.gpu
@torch_gpu
def test_bf16_autocast_training_step_on_cuda() -> None:
    from rnnedge.models.fused_scan import forced_scan
    from tests.conftest import tiny_model

    idx = torch.randint(0, 20, (8, 257), device="cuda")
    losses = {}
    for mode in ("auto", "doubling"):
        for arch in ("mingru", "minlstm"):
            model = tiny_model(arch, d_model=64).cuda().train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            with forced_scan(mode), torch.autocast("cuda", dtype=torch.bfloat16):
                logits, _ = model(idx[:, :-1])
                loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), idx[:, 1:].flatten())
            loss.backward()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters())
            opt.step()
            assert all(torch.isfinite(p).all() for p in model.parameters())
            losses[mode, arch] = loss.item()
    for arch in ("mingru", "minlstm"):
        assert abs(losses["auto", arch] - losses["doubling", arch]) < 0.05  # bf16: same loss to ~1%


@pytest.mark.gpu
@ort_gpu
def test_ort_cuda_parallel_graph_matches_cpu_with_tf32_off(exports) -> None:
    ids = np.random.default_rng(1).integers(0, len(VOCAB), size=(2, 1024))
    cpu = ParallelSession(exports["mingru"]).run(ids)[0]
    session = ParallelSession(exports["mingru"], providers="cuda")
    assert session.graph.session.get_provider_options()[CUDA_EP]["use_tf32"] == "0"
    assert np.abs(session.run(ids)[0] - cpu).max() < 1e-4
    tf32 = ParallelSession(exports["mingru"], providers=ProviderChoice("cuda", tf32=True))
    assert tf32.graph.session.get_provider_options()[CUDA_EP]["use_tf32"] == "1"
    assert np.isfinite(tf32.run(ids)[0]).all()


@pytest.mark.gpu
@ort_gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_step_session_on_cuda_keeps_state_on_device(exports, cuda_graph) -> None:
    cpu = StepSession(exports["lstm"], batch=4)
    try:
        gpu = StepSession(exports["lstm"], providers=ProviderChoice("cuda", cuda_graph=cuda_graph), batch=4)
    except GraphError as exc:  # ORT refuses CUDA graphs when nodes fall outside the CUDA EP
        pytest.skip(f"ONNX Runtime refused CUDA graphs for this graph: {exc}")
    assert gpu.describe()["state_on"] == "cuda" and gpu.describe()["cuda_graph"] == cuda_graph
    ids = np.random.default_rng(2).integers(0, len(VOCAB), size=(4, 64))
    for t in range(64):
        assert np.abs(gpu.feed(ids[:, t]) - cpu.feed(ids[:, t])).max() < 1e-4
    saved = gpu.state
    assert all(np.abs(saved[n] - cpu.state[n]).max() < 1e-4 for n in saved)
    gpu.reset(stream=2)
    cpu.reset(stream=2)
    assert np.abs(gpu.feed(ids[:, 0]) - cpu.feed(ids[:, 0])).max() < 1e-4
    gpu.state = cpu.state
    assert np.abs(gpu.feed_sequence(ids[0, :10]) - cpu.feed_sequence(ids[0, :10])).max() < 1e-4


@pytest.mark.gpu
@ort_gpu
def test_memcpy_counts_on_cuda(exports) -> None:
    for kind in ("step", "parallel"):
        counts = memcpy_nodes(exports["mingru"] / f"{kind}.onnx", "cuda")
        assert set(counts) == {"MemcpyFromHost", "MemcpyToHost", "total"}
        assert counts["total"] == counts["MemcpyFromHost"] + counts["MemcpyToHost"] >= 0
