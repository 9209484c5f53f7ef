"""Drift analysis: metric math, growth fits, variant selection, states of any shape, runs on tiny graphs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from rnnedge.drift import metrics as M
from rnnedge.drift import run_drift
from rnnedge.drift.fit import fit_growth, power_law, saturation, value_at
from rnnedge.drift.graphs import open_pair
from rnnedge.drift.run import stream_offsets
from rnnedge.errors import GraphError, VerificationError
from rnnedge.graphmeta import PREFIX
from rnnedge.inference import StepRunner, open_graph
from rnnedge.models.registry import MIXER_NAMES
from tests.test_drift_helpers import (
    TEXT,
    VOCAB,
    copy_variant,
    dynamic_int8,
    exported_model,
    fp16_variant,
    label_variant,
    make_legacy,
    set_metadata,
    step_graph,
)

# --- metric math on synthetic arrays ---------------------------------------------------------------


def test_kl_zero_for_identical_and_matches_hand_value() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7)).astype(np.float32)
    assert np.allclose(M.kl_divergence(x, x), 0.0, atol=1e-12)
    assert np.allclose(M.kl_divergence(x, x + 3.0), 0.0, atol=1e-9)  # softmax is shift-invariant
    p, q = np.log([[0.5, 0.5]]), np.log([[0.9, 0.1]])
    assert M.kl_divergence(p, q)[0] == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))


def test_max_abs_and_top1() -> None:
    assert M.max_abs_error(np.array([[3.0, 4.5], [0.0, 0.0]]), np.array([[3.0, 4.0], [0.0, 0.0]])).tolist() == [0.5, 0]
    a = np.array([[1.0, 2.0, 0.0], [5.0, 0.0, 0.0]])
    b = np.array([[0.0, 3.0, 0.0], [0.0, 1.0, 0.0]])
    assert M.top1_agreement(a, b).tolist() == [True, False]


def test_squared_norms_cover_every_dim_but_batch() -> None:
    ref = np.zeros((2, 2, 3), np.float32)  # (B, 2, 3)
    ref[0, 1, 2], ref[1, 0, 0] = 2.0, 4.0
    approx = ref.copy()
    approx[0, 0, 0] = 1.0  # stream 0: error 1 against norm 2 -> relative 0.5
    num, den = M.squared_norms(approx.astype(np.float16), ref)  # a float16 side is widened, not truncated
    assert num.tolist() == [1.0, 0.0] and den.tolist() == [4.0, 16.0]
    assert np.sqrt(num / den).tolist() == [0.5, 0.0]


def test_mean_and_stderr_by_batch_means() -> None:
    rng = np.random.default_rng(0)
    mean, se = M.mean_and_stderr(rng.normal(0.0, 1.0, (4096, 8)))
    assert abs(mean) < 4 * se and se == pytest.approx(1 / math.sqrt(4096 * 8), rel=0.35)
    assert M.mean_and_stderr(np.full((64, 2), 0.25)) == (0.25, 0.0)


# --- growth fits ---------------------------------------------------------------------------------


def test_fit_recovers_planted_power_law() -> None:
    t = np.arange(1, 5001)
    noise = np.exp(np.random.default_rng(1).normal(0, 0.05, t.size))
    fit = fit_growth(3e-3 * t**0.4 * noise)
    assert fit.alpha == pytest.approx(0.4, abs=0.02)
    assert fit.c == pytest.approx(3e-3, rel=0.1)
    assert fit.r2 is not None and fit.r2 > 0.99
    assert fit.growth_ratio == pytest.approx((5000 / 10) ** 0.4, rel=0.1)


def test_fit_finds_saturation_level_and_step() -> None:
    t = np.arange(1, 4001)
    curve = 8e-3 * (1 - np.exp(-t / 20.0))
    level, step = saturation(curve)
    assert level == pytest.approx(8e-3, rel=1e-3)
    assert 35 <= step <= 50  # 1 - exp(-t/20) = 0.9 at t = 46; smoothing over [t, 1.1t] reaches it a bit earlier
    assert fit_growth(curve).growth_ratio == pytest.approx(8e-3 / (8e-3 * (1 - math.exp(-0.5))), rel=0.05)
    assert value_at(np.arange(1.0, 101.0), 50) == pytest.approx(50.0, abs=1)
    assert power_law(np.zeros(50)) == (None, None, None)


def test_stream_offsets_disjoint_overlap_and_shrink() -> None:
    steps, offs, notes = stream_offsets(1000, 100, 4)
    assert (steps, offs, notes) == (100, [0, 250, 500, 750], [])
    steps, offs, notes = stream_offsets(300, 100, 4)
    assert steps == 100 and offs[0] == 0 and offs[-1] == 199 and "overlap" in notes[0]
    steps, offs, notes = stream_offsets(60, 100, 2)
    assert steps == 59 and "shrunk" in notes[0]
    with pytest.raises(Exception, match="at least"):
        stream_offsets(10, 100, 2)


# --- which two graphs are compared -----------------------------------------------------------------


def test_variant_selection_none_one_several(tmp_path: Path) -> None:
    folder = step_graph(tmp_path / "m", layers=1)
    with pytest.raises(GraphError, match=r"no precision variant .*found: fp32.*run `rnnedge quantize"):
        open_pair(folder)
    dynamic_int8(folder)
    assert open_pair(folder).variant_name == "int8-dynamic"
    copy_variant(folder, "int8-dynamic", "int8-copy")
    with pytest.raises(GraphError, match=r"several step variants \(int8-copy, int8-dynamic\).*--variant"):
        open_pair(folder)
    pair = open_pair(folder, variant="int8-copy")
    assert (pair.baseline_name, pair.variant_name) == ("fp32", "int8-copy")
    # With a non-fp32 baseline, the one other variant is chosen.
    assert open_pair(folder, baseline="int8-dynamic").variant_name == "int8-copy"
    with pytest.raises(GraphError, match=r"no step.int4-weight.onnx .*found: fp32, int8-copy, int8-dynamic"):
        open_pair(folder, variant="int4-weight")
    with pytest.raises(GraphError, match="both 'int8-dynamic'"):
        open_pair(folder, variant="int8-dynamic", baseline="int8-dynamic")


def test_variant_file_must_say_what_its_name_says(tmp_path: Path) -> None:
    folder = step_graph(tmp_path / "m", layers=1)
    label_variant(dynamic_int8(folder), "fp16")
    with pytest.raises(GraphError, match="says it is variant 'fp16', but its file name says 'int8-dynamic'"):
        open_pair(folder)


def test_variant_from_another_model_is_named(tmp_path: Path) -> None:
    folder = step_graph(tmp_path / "m", layers=1, seed=0)
    other = step_graph(tmp_path / "o", layers=2, seed=0)
    (folder / "step.int8.onnx").write_bytes(dynamic_int8(other).read_bytes())
    label_variant(folder / "step.int8.onnx", "int8")
    with pytest.raises(GraphError, match=r"different model .*n_layers 1 vs 2"):
        open_pair(folder)


def test_legacy_folder_with_step_int8_onnx(tmp_path: Path) -> None:
    folder = step_graph(tmp_path / "legacy", layers=1)
    dynamic_int8(folder, variant="int8")
    make_legacy(folder)  # rnnedge 0.1 metadata: no format / variant keys, int8 described by rnnedge.quantization
    r = run_drift(folder, TEXT, steps=40, streams=2, gen_steps=5)
    assert (r.baseline.variant, r.variant.variant) == ("fp32", "int8")
    assert r.variant.quantization == {"method": "dynamic"} and r.state_err.max() > 0


# --- runs ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = step_graph(tmp_path_factory.mktemp("drift") / "m", layers=2, dims=(16,), seed=1)
    dynamic_int8(folder)
    return folder


def test_drift_on_dynamic_int8(model: Path) -> None:
    r = run_drift(model, TEXT, steps=200, streams=4, gen_steps=50)
    assert r.state_names == ("0.h", "1.h") and r.arch == "synthetic" and r.exact_states == ()
    assert (r.baseline.variant, r.variant.variant) == ("fp32", "int8-dynamic")
    assert r.variant.recipe is not None and r.variant.recipe["type"] == "DynamicInt8"
    assert r.state_err.shape == (2, 200, 4) and r.kl.shape == (200, 4)
    assert np.all(r.state_err > 0) and np.all(np.isfinite(r.state_err))
    assert np.all(r.kl >= 0) and 0.5 < r.top1.mean() <= 1.0
    # A sane variant: the error of one step is not larger than the error that accumulated.
    assert r.state_err_one.mean() <= r.state_err.mean() * 1.05
    # At t=1 both runs start from the same zero state, so one-step == accumulated exactly.
    assert np.allclose(r.state_err_one[:, 0], r.state_err[:, 0])
    assert abs(r.loss_variant - r.loss_baseline) < 0.1 and r.steps == r.steps_requested == 200
    assert len(r.free.baseline_text) == 50


@pytest.mark.parametrize("arch", MIXER_NAMES)
def test_drift_on_every_registered_mixer(arch: str, tmp_path: Path) -> None:
    """A real export of each registered mixer (the registry decides which), int8 dynamic vs fp32."""
    folder = exported_model(tmp_path, arch, seed=7)
    dynamic_int8(folder)
    r = run_drift(folder, TEXT, steps=48, streams=2, gen_steps=10)
    info = open_pair(folder).baseline.info
    assert r.arch == arch and r.states == tuple(s for s in info.states if s.kind != "position")
    assert np.all(np.isfinite(r.state_err)) and 0 < r.state_err.mean() < 0.5
    assert np.allclose(r.state_err_one[:, 0], r.state_err[:, 0]) and np.all(np.isfinite(r.kl))


def test_identical_variant_has_zero_error_and_no_divergence(model: Path) -> None:
    copy_variant(model, "fp32", "same")
    try:
        r = run_drift(model, TEXT, variant="same", steps=100, streams=3, gen_steps=60)
    finally:
        (model / "step.same.onnx").unlink()
    assert np.all(r.state_err == 0) and np.all(r.state_err_one == 0)
    assert np.all(r.kl == 0) and r.top1.all() and np.all(r.logit_err == 0)
    assert r.loss_variant == r.loss_baseline and r.loss_delta() == (0.0, 0.0)
    assert r.free.diverged_at is None and r.free.baseline_text == r.free.variant_text


def test_two_non_fp32_variants_compared_with_each_other(tmp_path: Path) -> None:
    folder = step_graph(tmp_path / "m", layers=2, seed=3)
    dynamic_int8(folder)
    copy_variant(folder, "int8-dynamic", "int8-copy")
    same = run_drift(folder, TEXT, variant="int8-copy", baseline="int8-dynamic", steps=64, streams=2, gen_steps=10)
    assert (same.baseline.variant, same.variant.variant) == ("int8-dynamic", "int8-copy")
    assert np.all(same.state_err == 0) and np.all(same.kl == 0)
    fp16_variant(folder)  # float16 weights *and* float16 states: fed the int8 baseline's state as float16
    r = run_drift(folder, TEXT, variant="fp16", baseline="int8-dynamic", steps=64, streams=2, gen_steps=10)
    assert [s.dtype for s in r.states] == ["float32", "float32"]  # described by the baseline
    assert 0 < r.state_err.mean() < 0.2 and np.allclose(r.state_err_one[:, 0], r.state_err[:, 0])


def test_rank3_state_and_position_counter(tmp_path: Path) -> None:
    folder = step_graph(tmp_path / "m", dims=(2, 3), layers=2, position=True, seed=4)
    dynamic_int8(folder)
    r = run_drift(folder, TEXT, steps=80, streams=3, gen_steps=10)
    assert r.state_names == ("0.h", "1.h") and [s.name for s in r.exact_states] == ["0.pos"]
    assert r.states[0].shape == ("batch", 2, 3)
    assert r.state_err.shape == (2, 80, 3) and np.all(r.state_err > 0)
    # The relative error is over both non-batch dims: recompute stream 0 at t=1 by hand from the graphs.
    base, var = (StepRunner(open_graph(folder / f, kind="step")) for f in ("step.onnx", "step.int8-dynamic.onnx"))
    x = VOCAB.encode(TEXT)[r.offsets[0] : r.offsets[0] + 1]  # (1,)
    _, sb = base.step(x, base.zeros(1))
    _, sv = var.step(x, var.zeros(1))
    want = np.linalg.norm(sv[1] - sb[1]) / np.linalg.norm(sb[1])  # (1, 2, 3) -> Frobenius over all dims
    assert r.state_err[1, 0, 0] == pytest.approx(want, rel=1e-5)


def test_position_state_that_differs_is_refused(tmp_path: Path) -> None:
    folder = step_graph(tmp_path / "m", dims=(2, 3), layers=1, position=True, seed=5)
    wrong = step_graph(tmp_path / "w", dims=(2, 3), layers=1, position=True, seed=5, position_step=2)
    (folder / "step.broken.onnx").write_bytes((wrong / "step.onnx").read_bytes())
    label_variant(folder / "step.broken.onnx", "broken")
    with pytest.raises(VerificationError, match=r"position state 0.pos \(int64\) differs from the baseline at step 1"):
        run_drift(folder, TEXT, steps=20, streams=2, gen_steps=5)


def test_nan_logits_are_named(tmp_path: Path) -> None:
    folder = step_graph(tmp_path / "m", layers=1, seed=6)
    model = onnx.load(str(folder / "step.onnx"))
    head = next(i for i in model.graph.initializer if i.name == "head")
    arr = onnx.numpy_helper.to_array(head).copy()
    arr[0, 0] = np.nan
    head.CopyFrom(onnx.numpy_helper.from_array(arr, "head"))
    set_metadata(model, {PREFIX + "variant": "nan"})
    onnx.save(model, str(folder / "step.nan.onnx"))
    with pytest.raises(VerificationError, match="the nan graph produced NaN/inf logits at step 1"):
        run_drift(folder, TEXT, steps=20, streams=2, gen_steps=5)


def test_drift_never_imports_torch_or_onnx(model: Path, tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
        "from rnnedge.drift import run_drift, write_report\n"
        "import rnnedge._cli.drift\n"
        f"r = run_drift({str(model)!r}, {TEXT!r}, steps=30, streams=2, gen_steps=5)\n"
        f"write_report([r], {str(tmp_path / 'R')!r}, {{'data': 'x', 'steps': 30, 'streams': 2}})\n"
        "assert not [m for m in ('torch', 'onnx') if sys.modules.get(m) is not None]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "R" / "report.json").read_text())["models"][0]["steps"] == 30
