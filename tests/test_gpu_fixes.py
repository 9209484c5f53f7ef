"""Bugs a GPU run would hit, reproduced on CPU: int32 ids through DeviceStep, a CUDA EP that is listed
but does not load, and benchmarks/gpu.sh's offline --data handling."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rnnedge.exporter import export_model
from rnnedge.inference import open_graph
from rnnedge.inference.cuda_check import CUDA_EP, cuda_provider_problem
from rnnedge.runtime import cuda
from tests.test_mobile import make_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_device_step_feeds_int32_ids_to_a_mobile_graph(tmp_path) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", "mingru", seed=2)
    result = export_model(ckpt, tmp_path / "out", max_seq_len=64, target="mobile")
    path = result.out_dir / "mobile" / "step.onnx"
    graph = open_graph(path, "step")
    assert graph.ids_dtype == np.int32
    device = cuda.DeviceStep(graph, 1, "cpu")
    host = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in host.get_inputs()]
    states = [np.zeros([1, *i.shape[1:]], dtype=np.float32) for i in host.get_inputs()[1:]]
    for tok in (3, 1, 4, 1, 5):
        ids = np.array([tok], dtype=np.int64)  # callers hand int64; the graph takes int32
        device.run(ids)
        want = host.run(None, dict(zip(names, [ids.astype(np.int32), *states], strict=True)))
        states = want[1:]
        np.testing.assert_allclose(device.logits(), want[0], atol=1e-6)


class _FallbackSession:
    """What onnxruntime-gpu without libcudart.so.13 does: accepts the CUDA EP, runs on the CPU EP."""

    def __init__(self, model, providers=None) -> None:
        self.asked = providers

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]


def test_listed_cuda_provider_that_falls_back_is_reported(monkeypatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, "CPUExecutionProvider"])
    problem = cuda_provider_problem(_FallbackSession)
    assert problem is not None and "did not load" in problem and "onnxruntime-gpu[cuda" in problem


def test_cuda_provider_check_passes_when_the_session_gets_it(monkeypatch) -> None:
    class Loaded(_FallbackSession):
        def get_providers(self) -> list[str]:
            return [CUDA_EP, "CPUExecutionProvider"]

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, "CPUExecutionProvider"])
    assert cuda_provider_problem(Loaded) is None


def test_cuda_provider_check_on_this_cpu_build() -> None:
    if CUDA_EP in ort.get_available_providers():
        pytest.skip("this onnxruntime lists the CUDA EP")
    assert "has no CUDAExecutionProvider" in (cuda_provider_problem() or "")


def _gpu_sh(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a copy of gpu.sh in a scratch tree with no ../shared/data, so the default cannot be found."""
    (tmp_path / "repo" / "benchmarks").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "gpu.sh", tmp_path / "repo" / "benchmarks" / "gpu.sh")
    cmd = ["bash", str(tmp_path / "repo" / "benchmarks" / "gpu.sh"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def test_gpu_sh_never_downloads_and_needs_a_data_file(tmp_path) -> None:
    done = _gpu_sh(tmp_path)
    assert done.returncode == 2 and "pass --data PATH" in done.stderr
    done = _gpu_sh(tmp_path / "b", "--data", str(tmp_path / "missing.txt"))
    assert done.returncode == 2 and "is not a file" in done.stderr
    assert "shakespeare" not in (ROOT / "benchmarks" / "gpu.sh").read_text().split("data=", 1)[1].split("\n")[0]
