"""The runtime on a device without torch (and without onnx): run it where `import torch` fails."""

# ruff: noqa: F811  (the `exports` fixture is imported from tests.test_runtime_graphs)
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.test_runtime_graphs import VARIANT, exports  # noqa: F401

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["torch"] = None  # `import torch` now raises ImportError
    sys.modules["onnx"] = None
    import json
    import numpy as np
    import rnnedge.inference, rnnedge.runtime, rnnedge._cli.runtime
    from rnnedge.inference import open_graph, step_nll
    from rnnedge.runtime import StepSession, ParallelSession, evaluate_export, generate

    export = sys.argv[1]
    s = StepSession(export, batch=2)
    logits = s.feed([1, 2])
    assert logits.shape == (2, len(s.vocab)) and np.isfinite(logits).all()
    s.reset(stream=0)
    assert s.describe()["state_bytes_per_stream"] > 0
    text = "".join(generate(export, "All:", 40, seed=0))
    loss = evaluate_export(export, "First Citizen:\\nBefore we proceed any further")
    graph = open_graph(export + "/step.onnx", "step")
    assert step_nll(graph, graph.info.vocab.encode("All:\\nSpeak, speak.")[None]) > 0
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx") and sys.modules[m] is not None)
    print(json.dumps({"text": text, "loss": loss, "loaded": loaded}))
    from rnnedge.cli import app
    sys.argv = ["rnnedge", *sys.argv[2:]]
    app()
    """
)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=120)


def test_runtime_and_generate_cli_run_without_torch(exports) -> None:
    export = str(exports["lstm"] / "export")
    res = _run(export, "generate", export, "--prompt", "All:", "--tokens", "30", "--seed", "4")
    assert res.returncode == 0, res.stderr
    first, cli_out = res.stdout.split("\n", 1)
    report = json.loads(first)
    assert len(report["text"]) == 40 and report["loss"]["chars"] > 0
    assert report["loaded"] == []  # neither torch nor onnx got imported
    assert cli_out.startswith("All:") and len(cli_out) == 4 + 30 + 1


def test_bench_cli_runs_without_torch(exports, tmp_path) -> None:
    export = str(exports["mingru"] / "export")
    out = tmp_path / "bench.json"
    res = _run(export, "bench", export, "--steps", "30", "--json", str(out))
    assert res.returncode == 0, res.stderr
    result = json.loads(out.read_text())
    assert "is not installed" in result["torch"]["skipped"]
    assert set(result["step"]) == {"fp32", VARIANT} and set(result["step"][VARIANT]) == {"batch1", "batch8"}
    assert "PyTorch baseline skipped" in res.stdout and "fp32 batch1" in res.stdout and result["floor"]["available"]
