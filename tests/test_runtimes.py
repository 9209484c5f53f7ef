"""The exported graphs in other runtimes (the `runtimes` extra): OpenVINO and tract load every graph rnnedge
writes for a device, for every mixer, and match ONNX Runtime, through the same `--provider` sessions
eval/generate/drift use.

Graphs (tests/device_support.py): step.onnx, parallel.onnx, mobile/step.onnx (int32 ids, batch 1),
qnn-htp/step.onnx (opset 20), the --opset 20 step/parallel, and the step/parallel int8-dynamic, int8-qdq
and int4-weight variants. fp32: a stream with the state fed back (12 steps; parallel chunks below, at and
above 2^levels), <= 1e-4 against ORT on the same file. Variants: the runtimes' own int8/int4 kernels, so
<= VARIANT_TOL against ORT on the same file (measured <= 1.6e-2 on these tiny models). Where a runtime
cannot run a graph, UNSUPPORTED names it and the error it gives, and the test asserts exactly that. A
test skips, with the reason, where its runtime is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rnnedge.errors import DependencyError, GraphError
from rnnedge.exporter.portable import portable
from rnnedge.inference import open_graph, open_session
from rnnedge.models import MIXER_NAMES
from rnnedge.quantization import quantize_export
from rnnedge.targets import target_spec
from rnnedge.targets.foreign import read_io, read_metadata
from rnnedge.targets.qemu import qemu_binary
from tests.device_support import DeviceExport, device_exports  # noqa: F401
from tests.test_quantize_support import TEXT

RUNTIMES = ("openvino", "tract")
TOL = 1e-4
VARIANT_TOL = 0.05  # int8/int4 variants vs ORT's kernels on the same file
STEPS = 12
CHUNKS = (3, 32, 1, 5)  # parallel-graph calls, state carried: T below and at 2^levels (max_seq_len 32)
# (runtime, mixer, graph kind) -> the error that runtime gives. tract 0.23: the transformer's parallel
# graph computes its position state from the input's shape, which tract keeps as a shape value (TDim)
# its Python API cannot return (fp32 and variants alike).
UNSUPPORTED = {("tract", "transformer", "parallel"): "Unsupported DatumType in the public API TDim"}


def needs(name: str) -> None:
    why = target_spec(name).probe()
    if not why.ok:
        pytest.skip(f"{name} cannot run here: {why.reason}")


@pytest.fixture(scope="module", params=["mingru", "lstm"])
def export(request: pytest.FixtureRequest, device_exports: dict[str, DeviceExport]) -> Path:  # noqa: F811
    return device_exports[request.param].folder


def logits_stream(path: Path, provider: str, tokens: np.ndarray) -> np.ndarray:
    """(T, V) logits of one stream, the state fed back from zero: the step graph fed the first STEPS
    tokens one by one, or the parallel graph fed consecutive CHUNKS of them."""
    graph = open_graph(path, None, provider, threads=1)
    assert (graph.session.get_providers()[0] == "CPUExecutionProvider") == (provider == "cpu")
    states, out, at = graph.zero_states(1), [], 0
    if graph.info.kind == "step":
        for t in tokens[:STEPS]:
            logits, states = graph.run(np.array([t]), states)
            out.append(logits[0])
        return np.stack(out)
    for size in CHUNKS:
        logits, states = graph.run(tokens[None, at : at + size], states)
        out.append(logits[0])
        at += size
    return np.concatenate(out)


@pytest.mark.parametrize("arch", MIXER_NAMES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_device_graph_matches_ort(
    device_exports: dict[str, DeviceExport],  # noqa: F811
    runtime: str,
    arch: str,
    record_property: pytest.RecordProperty,
) -> None:
    needs(runtime)
    tokens = np.random.default_rng(0).integers(0, 20, sum(CHUNKS))
    for name, path in device_exports[arch].graphs.items():
        kind = "parallel" if Path(name).name.startswith("parallel") else "step"
        why = UNSUPPORTED.get((runtime, arch, kind))
        ref = logits_stream(path, "cpu", tokens)
        if why is not None:
            with pytest.raises(GraphError, match=why):
                logits_stream(path, runtime, tokens)
            record_property(f"{runtime}.{name}", f"unsupported: {why}")
            continue
        got = logits_stream(path, runtime, tokens)
        assert got.shape == ref.shape and np.isfinite(got).all(), (runtime, arch, name)
        worst = float(np.abs(got - ref).max())
        record_property(f"{runtime}.{name}", worst)
        variant = len(Path(name).name.split(".")) == 3
        assert worst <= (VARIANT_TOL if variant else TOL), (runtime, arch, name, worst)


def test_sessions_report_what_ort_reports(export: Path) -> None:
    """I/O and metadata read from the file (no onnx import in the targets) equal ORT's and onnx's view."""
    data = (export / "parallel.onnx").read_bytes()
    model = onnx.load_from_string(data)
    assert read_metadata(data) == {p.key: p.value for p in model.metadata_props}
    ort_session = open_session(data)
    ins, outs = read_io(data)
    assert [(a.name, a.type, a.shape) for a in ins] == [(a.name, a.type, a.shape) for a in ort_session.get_inputs()]
    assert [(a.name, a.type, a.shape) for a in outs] == [(a.name, a.type, a.shape) for a in ort_session.get_outputs()]
    assert not model.graph.value_info  # nothing symbolic left to contradict a fixed shape
    if json.loads(read_metadata(data)["rnnedge.config"])["arch"] == "mingru":  # a doubling scan
        assert "Pad" in {n.op_type for n in model.graph.node}  # its shifts, rewritten
        assert "ConstantOfShape" not in {n.op_type for n in model.graph.node}


def shift_graph(steps: int, fill: float) -> onnx.ModelProto:
    """The traced `_shift(x, steps, fill)`: Concat([ConstantOfShape(Shape(x[:, :s])), x[:, :-s]], axis=1)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time", 3])
    consts = {"zero": [0], "s": [steps], "neg": [-steps], "axis": [1], "one": [1]}
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in consts.items()]
    fill_t = numpy_helper.from_array(np.array([fill], np.float32), "fill")
    nodes = [
        helper.make_node("Slice", ["x", "zero", "s", "axis", "one"], ["head"]),
        helper.make_node("Shape", ["head"], ["head_shape"]),
        helper.make_node("ConstantOfShape", ["head_shape"], ["block"], value=fill_t),
        helper.make_node("Slice", ["x", "zero", "neg", "axis", "one"], ["tail"]),
        helper.make_node("Concat", ["block", "tail"], ["y"], axis=1),
    ]
    model = helper.make_model(helper.make_graph(nodes, "shift", [x], [y], inits))
    model.opset_import[0].version, model.ir_version = 17, 8
    return model


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_portable_rewrites_the_scan_shift_with_the_same_values(fill: float) -> None:
    original = shift_graph(4, fill)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(original)
    assert portable(rewritten) == 1
    assert [n.op_type for n in rewritten.graph.node] == ["Pad", "Slice"]
    onnx.checker.check_model(rewritten, full_check=True)
    a, b = open_session(original.SerializeToString()), open_session(rewritten.SerializeToString())
    for t in (1, 3, 4, 5, 9):  # shorter than, as long as and longer than the shift
        x = np.random.default_rng(t).standard_normal((2, t, 3)).astype(np.float32)
        np.testing.assert_array_equal(b.run(None, {"x": x})[0], a.run(None, {"x": x})[0])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_absent_runtime_says_how_to_install_it(export: Path, runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == runtime else real(name, *a))
    why = target_spec(runtime).probe()
    assert not why.ok and "rnnedge[runtimes]" in why.reason
    with pytest.raises(DependencyError, match=f"--provider {runtime} cannot run here: .*pip install"):
        open_session(export / "step.onnx", runtime)


def test_quantize_verifies_a_variant_in_each_runtime(export: Path, tmp_path: Path) -> None:
    for runtime in RUNTIMES:
        needs(runtime)
    (tmp_path / "eval.txt").write_text(TEXT[:1500])
    export = Path(shutil.copytree(export, tmp_path / "export"))  # the shared folders stay as they are
    res = quantize_export(export, "int8-dynamic", eval_text=tmp_path / "eval.txt", verify_on_targets=RUNTIMES)
    on = res.graphs["step"]["targets"]
    assert set(on) == set(RUNTIMES)
    for runtime in RUNTIMES:
        assert on[runtime]["target"] == runtime and abs(on[runtime]["loss_delta"]) < 0.5


AVX2_STEP = """
import sys
import numpy as np
from rnnedge.inference import open_graph
graph = open_graph(sys.argv[1], "step", "openvino", threads=1)
logits, _ = graph.run(np.array([1]), graph.zero_states(1))
options = graph.session.get_provider_options()["OpenVINO CPU"]
print("ran", logits.shape, "SNIPPETS_MODE=" + options["SNIPPETS_MODE"])
"""


def test_openvino_one_thread_step_compiles_on_an_avx2_cpu(export: Path, tmp_path: Path) -> None:
    """On an AVX2-only CPU (qemu's Haswell) OpenVINO's CPU plugin segfaults compiling a batch-1 step graph
    for one thread unless snippets are off (its plain compile_model dies with SIGSEGV there): the target's
    session compiles and runs it."""
    needs("openvino")
    qemu = qemu_binary("x86_64")
    if qemu is None:
        pytest.skip("qemu-x86_64 is not installed (apt-get install qemu-user-static)")
    script = tmp_path / "avx2_step.py"
    script.write_text(AVX2_STEP)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [qemu, "-cpu", "Haswell-noTSX", sys.executable, str(script), str(export / "step.onnx")]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-800:]
    assert "ran (1, " in res.stdout and "SNIPPETS_MODE=DISABLE" in res.stdout


def mod_graph() -> onnx.ModelProto:
    """y = pos[:, None] mod [6, 628] (a broadcast dividend) and x padded by (-T) mod 4 steps at its end
    (a scalar Mod of the shape, as the transformer's window padding)."""
    pos = helper.make_tensor_value_info("pos", TensorProto.INT64, ["batch"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time"])
    outs = [
        helper.make_tensor_value_info("y", TensorProto.INT64, ["batch", 2]),
        helper.make_tensor_value_info("padded", TensorProto.FLOAT, ["batch", "padded_time"]),
    ]
    consts = {"p": [6, 628], "one": [1], "w": 4, "zeros": [0, 0, 0]}
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in consts.items()]
    inits.append(numpy_helper.from_array(np.array(1, np.int64), "axis"))
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero_axis"))
    nodes = [
        helper.make_node("Unsqueeze", ["pos", "one"], ["pos2"]),
        helper.make_node("Mod", ["pos2", "p"], ["y"], fmod=0),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "axis"], ["t"]),
        helper.make_node("Neg", ["t"], ["neg"]),
        helper.make_node("Mod", ["neg", "w"], ["pad"], fmod=0),
        helper.make_node("Unsqueeze", ["pad", "zero_axis"], ["pad1"]),
        helper.make_node("Concat", ["zeros", "pad1"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["padded"]),
    ]
    model = helper.make_model(helper.make_graph(nodes, "mod", [pos, x], outs, inits))
    model.opset_import[0].version, model.ir_version = 17, 8
    return model


def test_portable_mods_compute_the_same_in_tract(tmp_path: Path) -> None:
    """tract 0.23 takes `b mod a` when only the dividend is broadcast (a zero position: a Rust panic that
    aborts the process) and folds a scalar shape Mod with the dividend's sign: the portable form of both
    gives ONNX's values in ORT and in tract."""
    needs("tract")
    import tract

    model = mod_graph()
    portable(model)
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "mod.onnx"
    onnx.save(model, path)
    pos, x = np.array([7, 0, 1300], np.int64), np.zeros((3, 3), np.float32)
    want = [np.array([7, 0, 1300])[:, None] % np.array([6, 628]), np.zeros((3, 3 + (-3) % 4), np.float32)]
    got = open_session(model.SerializeToString()).run(None, {"pos": pos, "x": x})
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    loaded = tract.onnx().load(str(path))
    names = [loaded.input_name(i) for i in range(loaded.input_count())]
    for k, name in enumerate(names):
        loaded.set_input_fact(k, "3,i64" if name == "pos" else "3,3,f32")
    out = loaded.into_model().into_runnable().run([pos if n == "pos" else x for n in names])
    assert all(np.array_equal(g.to_numpy(), w) for g, w in zip(out, want, strict=True))


def test_openvino_snippets_off_when_the_process_has_one_cpu(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --threads, OpenVINO uses the CPUs the process may run on: pinned to one (taskset, a 1-CPU
    container on a bigger host) that is the one-thread compile that segfaults, so snippets go off."""
    needs("openvino")
    import rnnedge.targets.openvino as ov_target

    session = open_session(export / "step.onnx", "openvino")
    monkeypatch.setattr(ov_target.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert session.properties()["SNIPPETS_MODE"] == "DISABLE"
    monkeypatch.setattr(ov_target.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert "SNIPPETS_MODE" not in session.properties()
