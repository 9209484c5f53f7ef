"""The bench: the floor from the graph's rnnedge.matmuls cross-checked against its MatMuls, the variants,
the PyTorch baseline (and why it is missing), the long stream, the CLI table and JSON."""

# ruff: noqa: F811  (the `exports` fixture is imported from tests.test_runtime_graphs)
from __future__ import annotations

import itertools
import json
import shutil

import onnx
import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.exporter.eager_baseline import make_eager_baseline
from rnnedge.inference import open_graph
from rnnedge.runtime import floor, memory
from rnnedge.runtime.bench import long_stream, run_bench
from tests.conftest import ARCHS
from tests.test_runtime_graphs import VARIANT, exports  # noqa: F401

runner = CliRunner()


def _graph_matmul_flops(path) -> int:
    """2*k*n for every MatMul/Gemm whose weight is an initializer of shape (k, n) (attention's
    activation x activation products, q·Kᵀ and p·V over the cache, have none and are not weight products)."""
    model = onnx.load(str(path))
    init = {i.name: list(i.dims) for i in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            weights = [init[i] for i in node.input[:2] if i in init and len(init[i]) == 2]
            if not any(i in init for i in node.input[:2]):
                continue
            assert len(weights) == 1, node
            total += 2 * weights[0][0] * weights[0][1]
    return total


@pytest.mark.parametrize("arch", ARCHS)
def test_floor_products_from_metadata_match_the_step_graph(exports, arch) -> None:
    path = exports[arch] / "export" / "step.onnx"
    matmuls = open_graph(path, "step").info.matmuls
    assert matmuls
    tabled = floor.flops_per_token(matmuls) - _graph_matmul_flops(path)  # layer-0 products now token tables
    layer0 = [2 * k * n for name, k, n in matmuls if name.startswith("0.")]
    subsets = {sum(c) for r in range(len(layer0) + 1) for c in itertools.combinations(layer0, r)}
    assert tabled in subsets  # the graph does every declared product but some of the first layer's


def test_floors_are_positive_and_scale_with_batch() -> None:
    matmuls = [("0.mixer_x", 32, 256), ("0.mixer_h", 64, 256), ("head", 32, 30)]
    res = floor.floors(matmuls, batches=(1, 8))
    assert res["flops_per_token"] == 2 * (32 * 256 + 64 * 256 + 32 * 30) and res["available"]
    assert res["peak_gflops"] > 0.1
    for b in ("batch1", "batch8"):
        assert res[b]["peak_floor_us"] > 0 and res[b]["shape_floor_us"] > 0
    assert res["batch8"]["peak_floor_us"] == pytest.approx(8 * res["batch1"]["peak_floor_us"])
    assert floor.measure_floors([], threads=1) == {"available": False, "note": floor.UNAVAILABLE}


def test_run_bench_with_variants_and_torch_baseline(exports) -> None:
    export = exports["mingru"] / "export"
    baseline = make_eager_baseline(export, steps=30)
    assert callable(baseline), baseline
    res = run_bench(export, threads=1, steps=30, seq_lens=(64, 2048), torch_baseline=baseline, stream_tokens=2000)
    assert set(res["step"]) == {"fp32", VARIANT} and set(res["step"][VARIANT]) == {"batch1", "batch8"}
    assert set(res["parallel"]) == {"fp32"}  # the variant has no parallel graph
    assert res["parallel"]["fp32"]["T2048"]["chunk"] == 1024  # the tiny export is exact to 1024: two chunks
    assert res["torch"]["step"]["batch1"]["p50"] > 0 and res["torch"]["parallel"]["T64"]["tokens_per_s"] > 0
    r = res["ratios"]
    for key in (
        "speedup_fp32_vs_torch_batch1",
        f"speedup_{VARIANT}_vs_torch_batch1",
        f"{VARIANT}_over_fp32_batch8",
        "fp32_batch1_over_shape_floor",
        "parallel_fp32_T64_speedup_vs_torch",
    ):
        assert r[key] > 0
    assert res["variants"][VARIANT]["files"] == {"step": f"step.{VARIANT}.onnx"}
    assert res["variants"]["fp32"]["state_bytes_per_stream"] == 2 * 32 * 4  # two layers of (batch, 32) float32
    assert res["states"]["0.h"]["shape"] == [1, 32]
    assert res["long_stream"]["all_logits_finite"] and res["long_stream"]["tokens"] == 2000


def test_short_stream_checks_the_state(exports) -> None:
    """Issue 13 item 5: a stream under 1000 tokens used to check nothing and report max|state| = 0."""
    res = long_stream(exports["gru"] / "export" / "step.onnx", 300, threads=1)
    assert res["max_abs_state"] > 0 and res["checked_every"] == 300 and set(res["max_abs_state_at"]) == {"300"}
    assert res["all_states_finite"] and res["all_logits_finite"]
    out = runner.invoke(app, ["bench", str(exports["gru"] / "export"), "--steps", "10", "--no-torch", "--stream", "7"])
    assert out.exit_code == 0, out.output
    line = next(x for x in out.stdout.splitlines() if x.startswith("long stream"))
    assert "7 tokens" in line and "max |state|=0.000" not in line
    bad = runner.invoke(app, ["bench", str(exports["gru"] / "export"), "--stream", "-1"])
    assert bad.exit_code == 1 and "--stream" in bad.stderr and bad.stderr.count("\n") == 1


def test_baseline_finds_a_relative_checkpoint_or_says_why(exports, tmp_path, monkeypatch) -> None:
    """Issue 13 item 6: a manifest naming the checkpoint relative to where export ran dropped the baseline."""
    root = tmp_path / "run"
    shutil.copytree(exports["minlstm"], root)
    manifest_path = root / "export" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["source"]["checkpoint"] = "ckpt"  # as `rnnedge export ckpt --out export` recorded it, run in root
    manifest_path.write_text(json.dumps(manifest))
    monkeypatch.chdir(tmp_path)  # elsewhere: neither export/ckpt nor ./ckpt exists
    assert callable(make_eager_baseline(root / "export", steps=10))
    shutil.rmtree(root / "ckpt")
    reason = make_eager_baseline(root / "export", steps=10)
    assert isinstance(reason, str) and "'ckpt' was not found" in reason and str(root / "ckpt") in reason
    res = runner.invoke(app, ["bench", str(root / "export"), "--steps", "10"])
    assert res.exit_code == 0, res.output
    assert "PyTorch baseline skipped: the manifest's checkpoint 'ckpt' was not found" in res.stdout


def test_bench_cli_prints_table_and_json(exports, tmp_path) -> None:
    out = tmp_path / "b.json"
    res = runner.invoke(app, ["bench", str(exports["lstm"] / "export"), "--steps", "20", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "lstm" in res.stdout and "speed-up" in res.stdout and "T4096" in res.stdout
    assert "state per stream: fp32 512 bytes" in res.stdout
    assert "process RSS, MiB" in res.stdout and "+session" in res.stdout
    data = json.loads(out.read_text())
    mem = data["step"]["fp32"]["batch1"]["memory"]
    assert mem["available"] and mem["peak"] >= mem["rss_used"] > 0
    assert (
        mem["made_bytes"] == mem["rss_made"] - mem["rss_before"] and data["variants"]["fp32"]["state_bytes_per_stream"]
    )
    assert set(data["step"]) == {"fp32"} and "batch8" in data["step"]["fp32"] and data["torch"]["step"]
    bad = runner.invoke(app, ["bench", str(tmp_path / "nope")])
    assert bad.exit_code == 1 and "not found" in bad.stderr


def test_bench_cli_named_variants(exports, tmp_path) -> None:
    export = str(exports["mingru"] / "export")
    out = tmp_path / "v.json"
    res = runner.invoke(app, ["bench", export, "--variant", VARIANT, "--steps", "10", "--no-torch", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{VARIANT} batch1" in res.stdout and f"{VARIANT} / fp32 step time at batch 1" in res.stdout
    assert "PyTorch baseline skipped: --no-torch" in res.stdout
    assert set(json.loads(out.read_text())["step"]) == {"fp32", VARIANT}
    fp32_only = runner.invoke(app, ["bench", export, "--variant", "fp32", "--steps", "10", "--no-torch"])
    assert fp32_only.exit_code == 0 and VARIANT not in fp32_only.stdout
    bad = runner.invoke(app, ["bench", export, "--variant", "int4-weight", "--steps", "10"])
    assert bad.exit_code == 1 and f"its step variants: fp32, {VARIANT}" in bad.stderr
    assert bad.stderr.count("\n") == 1


def test_resident_memory_from_proc_status(tmp_path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t3\n")
    assert memory.resident(status) == {"rss": 1024 * 1024, "peak": 2048 * 1024}
    status.write_text("Name:\tpython\nVmRSS:\t  1024 kB\n")  # no high-water mark: unknown, not a guess
    assert memory.resident(status) is None and memory.resident(tmp_path / "missing") is None
    assert memory.reset_peak(tmp_path / "no" / "clear_refs") is False
    if memory.resident() is None:
        pytest.skip("no /proc/self/status on this system")
    block, figures = memory.measure_resident(
        lambda: bytearray(16 << 20), lambda b: b.__setitem__(slice(None), b"x" * len(b))
    )
    assert len(block) == 16 << 20 and figures["available"]
    assert figures["made_bytes"] + figures["used_bytes"] > 8 << 20  # 16 MiB touched: RSS grew by most of it
    assert figures["peak"] >= figures["rss_used"]
