"""Drift analysis: metric math, growth fits, runs on tiny exported models, reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnedge.quantization import d_metrics as M
from rnnedge.quantization.drift import run_drift, stream_offsets
from rnnedge.quantization.fit import fit_growth, power_law, saturation, value_at
from rnnedge.quantization.report import SCHEMA, write_report
from tests.test_drift_helpers import TEXT, export_step, fake_int8, quantize_step

SETTINGS = {"data": "inline", "steps": 0, "streams": 4}


# --- metric math on synthetic arrays ---------------------------------------------------------------


def test_kl_zero_for_identical_and_matches_hand_value() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7)).astype(np.float32)
    assert np.allclose(M.kl_divergence(x, x), 0.0, atol=1e-12)
    assert np.allclose(M.kl_divergence(x, x + 3.0), 0.0, atol=1e-9)  # softmax is shift-invariant
    p, q = np.log([[0.5, 0.5]]), np.log([[0.9, 0.1]])
    assert M.kl_divergence(p, q)[0] == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))


def test_relative_error_top1_nll() -> None:
    ref = np.array([[3.0, 4.0], [0.0, 0.0]])
    approx = np.array([[3.0, 4.5], [0.0, 0.0]])
    assert M.relative_error(approx, ref).tolist() == pytest.approx([0.1, 0.0])
    assert M.max_abs_error(approx, ref).tolist() == [0.5, 0.0]
    a = np.array([[1.0, 2.0, 0.0], [5.0, 0.0, 0.0]])
    b = np.array([[0.0, 3.0, 0.0], [0.0, 1.0, 0.0]])
    assert M.top1_agreement(a, b).tolist() == [True, False]
    logits = np.log(np.array([[0.25, 0.75]]))
    assert M.nll(logits, np.array([1]))[0] == pytest.approx(-math.log(0.75))
    stats = M.stream_stats(np.array([[1.0, 3.0], [2.0, 2.0]]))
    assert stats["mean"].tolist() == [2.0, 2.0]


# --- growth fits ---------------------------------------------------------------------------------


def test_fit_recovers_planted_power_law() -> None:
    t = np.arange(1, 5001)
    noise = np.exp(np.random.default_rng(1).normal(0, 0.05, t.size))
    fit = fit_growth(3e-3 * t**0.4 * noise)
    assert fit.alpha == pytest.approx(0.4, abs=0.02)
    assert fit.c == pytest.approx(3e-3, rel=0.1)
    assert fit.r2 > 0.99
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


# --- runs on tiny exported models ----------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("drift_models")
    out = {}
    for arch in ("mingru", "lstm"):
        out[arch] = export_step(root / arch, arch=arch, d_model=24, n_layers=2, seed=1)
        quantize_step(out[arch])
    out["fake"] = export_step(root / "fake", arch="gru", d_model=16, n_layers=1, seed=2)
    fake_int8(out["fake"])
    return out


def test_drift_on_dynamic_int8(models: dict[str, Path]) -> None:
    r = run_drift(models["lstm"], TEXT, steps=200, streams=4, gen_steps=50)
    assert r.state_names == ("0.h", "0.c", "1.h", "1.c") and r.arch == "lstm"
    assert r.state_err.shape == (4, 200, 4) and r.kl.shape == (200, 4)
    assert np.all(r.state_err > 0) and np.all(np.isfinite(r.state_err))
    assert np.all(r.kl >= 0) and 0.5 < r.top1.mean() <= 1.0
    # A sane int8 graph: the error of one step is not larger than the error that accumulated.
    assert r.state_err_one.mean() <= r.state_err.mean() * 1.05
    # At t=1 both runs start from the same zero state, so one-step == accumulated exactly.
    assert np.allclose(r.state_err_one[:, 0], r.state_err[:, 0])
    assert abs(r.loss_int8 - r.loss_fp32) < 0.1
    assert len(r.free.fp32_text) == 50


def test_fake_int8_has_zero_error_and_no_divergence(models: dict[str, Path]) -> None:
    r = run_drift(models["fake"], TEXT, steps=100, streams=3, gen_steps=60)
    assert np.all(r.state_err == 0) and np.all(r.state_err_one == 0)
    assert np.all(r.kl == 0) and r.top1.all() and np.all(r.logit_err == 0)
    assert r.loss_int8 == r.loss_fp32
    assert r.free.diverged_at is None and r.free.fp32_text == r.free.int8_text


def test_report_files_schema_and_self_contained_html(models: dict[str, Path], tmp_path: Path) -> None:
    results = [run_drift(models[a], TEXT, steps=120, streams=4, gen_steps=40) for a in ("mingru", "lstm", "fake")]
    out = tmp_path / "REPORT"
    report = write_report(results, out, SETTINGS)
    for name in ("report.json", "report.md", "report.html", "drift.png"):
        assert (out / name).is_file(), name
    assert (out / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "report.json").read_text())
    assert data == json.loads(json.dumps(report)) and data["schema"] == SCHEMA
    assert {"schema", "rnnedge_version", "created_utc", "settings", "models"} <= set(data)
    m = data["models"][1]
    assert {"name", "arch", "loss", "state_error", "states", "free_running", "curves", "verdict"} <= set(m)
    assert m["arch"] == "lstm" and [s["name"] for s in m["states"]] == ["0.h", "0.c", "1.h", "1.c"]
    assert set(m["state_error"]["at"]) == {"10", "100", "last"}
    assert len(m["curves"]["t"]) == len(m["curves"]["kl"]["mean"])
    assert "nats/char" in m["verdict"] and "exactly" in data["models"][2]["verdict"]
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert html.count("src='data:image/png;base64,") >= 4
    assert "| mingru |" in (out / "report.md").read_text()
    # A second run replaces the earlier report; nothing else is left beside it.
    write_report(results[:1], out, SETTINGS)
    assert len(json.loads((out / "report.json").read_text())["models"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["REPORT"]


def test_report_failure_leaves_nothing(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnnedge.quantization import report as rep

    r = run_drift(models["fake"], TEXT, steps=40, streams=2, gen_steps=5)

    def boom(*_: object) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(rep.plots, "accumulation", boom)
    with pytest.raises(KeyboardInterrupt):
        write_report([r], tmp_path / "R", SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_quantization_package_never_imports_torch(models: dict[str, Path], tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from rnnedge.quantization.drift import run_drift\n"
        "from rnnedge.quantization.report import write_report\n"
        "import rnnedge._cli.drift\n"
        f"r = run_drift({str(models['mingru'])!r}, {TEXT!r}, steps=30, streams=2, gen_steps=5)\n"
        f"write_report([r], {str(tmp_path / 'R')!r}, {{'data': 'x', 'steps': 30, 'streams': 2}})\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "R" / "report.html").is_file()
