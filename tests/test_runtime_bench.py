"""The bench: FLOP count cross-checked against the ONNX graph, floors, the PyTorch baseline, the CLI table."""

# ruff: noqa: F811  (the `exports` fixture is imported from tests.test_runtime_graphs)
from __future__ import annotations

import json

import onnx
import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.runtime import floor
from rnnedge.runtime.bench import run_bench
from tests.test_runtime_graphs import ARCHS, exports  # noqa: F401


def _graph_matmul_flops(path) -> int:
    """2*k*n for every MatMul/Gemm whose weight is an initializer of shape (k, n)."""
    model = onnx.load(str(path))
    init = {i.name: list(i.dims) for i in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            weights = [init[i] for i in node.input[:2] if i in init and len(init[i]) == 2]
            assert len(weights) == 1, node
            total += 2 * weights[0][0] * weights[0][1]
    return total


@pytest.mark.parametrize("arch", ARCHS)
def test_flops_from_config_match_the_step_graph(exports, arch) -> None:
    path = exports[arch] / "export" / "step.onnx"
    config = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["rnnedge.config"])
    assert floor.flops_per_token(config) == _graph_matmul_flops(path)


def test_floors_are_positive_and_scale_with_batch() -> None:
    cfg = {"vocab_size": 30, "arch": "lstm", "n_layers": 1, "d_model": 32}
    res = floor.floors(cfg, batches=(1, 8))
    assert res["flops_per_token"] == 2 * (32 * 256 + 64 * 256 + 64 * 32 + 32 * 128 + 128 * 32 + 32 * 30)
    assert res["peak_gflops"] > 0.1
    for b in ("batch1", "batch8"):
        assert res[b]["peak_floor_us"] > 0 and res[b]["shape_floor_us"] > 0
    assert res["batch8"]["peak_floor_us"] == pytest.approx(8 * res["batch1"]["peak_floor_us"])


def test_run_bench_with_torch_baseline(exports) -> None:
    from rnnedge._cli.torch_baseline import make_torch_baseline

    export = exports["mingru"] / "export"
    baseline = make_torch_baseline(export, steps=30)
    assert callable(baseline), baseline
    res = run_bench(export, threads=1, steps=30, seq_lens=(64, 2048), torch_baseline=baseline, stream_tokens=2000)
    assert set(res["step"]) == {"fp32_batch1", "fp32_batch8", "int8_batch1", "int8_batch8"}
    assert res["parallel"]["T2048"]["chunk"] == 1024  # the tiny export is exact to 1024: two chunks
    assert res["torch"]["step"]["batch1"]["p50"] > 0 and res["torch"]["parallel"]["T64"]["tokens_per_s"] > 0
    r = res["ratios"]
    for key in ("speedup_fp32_vs_torch_batch1", "int8_over_fp32_batch8", "fp32_batch1_over_shape_floor"):
        assert r[key] > 0
    assert res["long_stream"]["all_logits_finite"] and res["long_stream"]["tokens"] == 2000


def test_bench_cli_prints_table_and_json(exports, tmp_path) -> None:
    out = tmp_path / "b.json"
    res = CliRunner().invoke(app, ["bench", str(exports["lstm"] / "export"), "--steps", "20", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "lstm" in res.stdout and "speed-up" in res.stdout and "T4096" in res.stdout
    data = json.loads(out.read_text())
    assert "torch" in data and "fp32_batch8" in data["step"] and "int8_batch1" not in data["step"]
    bad = CliRunner().invoke(app, ["bench", str(tmp_path / "nope")])
    assert bad.exit_code == 1 and "not found" in bad.stderr
