"""generate(): streaming, agreement with a PyTorch greedy loop, bad prompts, long streams; the CLI."""

# ruff: noqa: F811  (the `exports` fixture is imported from tests.test_runtime_graphs)
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.errors import ConfigError, InputError, UnknownCharacterError
from rnnedge.runtime import StepSession, generate
from tests.test_runtime_graphs import VARIANT, VOCAB, exports, torch_model  # noqa: F401


def test_greedy_generation_matches_a_torch_greedy_loop(exports) -> None:
    root = exports["minlstm"]
    model = torch_model(root)
    prompt = "First Citizen:\n"
    with torch.no_grad():
        logits, state = model(torch.from_numpy(VOCAB.encode(prompt)[None]))
        nxt = int(logits[0, -1].argmax())
        want = []
        for _ in range(40):
            want.append(VOCAB.chars[nxt])
            logits, state = model(torch.tensor([[nxt]]), state)
            nxt = int(logits[0, -1].argmax())
    got = list(generate(root / "export", prompt, 40, temperature=0))
    assert "".join(got) == "".join(want)


def test_generation_streams_and_is_reproducible(exports) -> None:
    sess = StepSession(exports["gru"] / "export")
    stream = generate(sess, "All:", 30, temperature=0.9, top_k=8, seed=11)
    first = next(stream)  # characters come one at a time
    assert len(first) == 1 and first in VOCAB
    rest = "".join(stream)
    again = "".join(generate(sess, "All:", 30, temperature=0.9, top_k=8, seed=11))  # state is reset
    assert first + rest == again and len(again) == 30
    assert again != "".join(generate(sess, "All:", 30, temperature=0.9, top_k=8, seed=12))


def test_bad_prompts_and_parameters(exports) -> None:
    export = exports["mingru"] / "export"
    with pytest.raises(UnknownCharacterError, match=r"'~' at position 3.*'Z'"):
        generate(export, "All~Z", 5)
    assert len("".join(generate(export, "All~Z", 5, on_unknown="skip", seed=0))) == 5
    with pytest.raises(InputError, match="empty"):
        generate(export, "", 5)
    with pytest.raises(InputError, match="outside the vocabulary"):
        generate(export, "~~", 5, on_unknown="skip")
    with pytest.raises(InputError, match="tokens"):
        generate(export, "All", -1)
    with pytest.raises(ConfigError, match="top_p"):
        generate(export, "All", 5, top_p=0)
    with pytest.raises(InputError, match="batch 1"):
        generate(StepSession(export, batch=2), "All", 5)


def test_long_stream_stays_finite_and_bounded(exports) -> None:
    """20,000 sampled characters through a tiny step graph: logits finite, state bounded throughout.

    (benchmarks/runtime_bench.py runs 100,000 with the default model.)
    """
    sess = StepSession(exports["minlstm"] / "export")
    n, worst, count = 20_000, 0.0, 0
    for count, _ in enumerate(generate(sess, "All:", n, temperature=1.0, seed=0), start=1):
        if count % 2000 == 0:
            state = sess.state
            assert all(np.isfinite(a).all() for a in state.values())
            worst = max(worst, max(float(np.abs(a).max()) for a in state.values()))
    logits = sess.feed(0)
    # minLSTM's state is a convex mix of h_{t-1} and g(.) > 0: bounded by the largest candidate ever seen
    assert count == n and np.isfinite(logits).all() and 0 < worst < 50


runner = CliRunner()


def test_cli_generate_streams_text(exports) -> None:
    export = exports["lstm"] / "export"
    res = runner.invoke(app, ["generate", str(export), "--prompt", "All:", "--tokens", "25", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("All:") and len(res.stdout) == len("All:") + 25 + 1
    again = runner.invoke(app, ["generate", str(export / "step.onnx"), "-p", "All:", "-n", "25", "--seed", "3"])
    assert again.stdout == res.stdout
    greedy = runner.invoke(app, ["generate", str(export), "-p", "All:", "-n", "10", "-t", "0", "--no-echo-prompt"])
    assert greedy.exit_code == 0 and len(greedy.stdout) == 11


def test_cli_generate_a_variant(exports) -> None:
    export = str(exports["mingru"] / "export")
    res = runner.invoke(app, ["generate", export, "--variant", VARIANT, "-p", "All:", "-n", "20", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("All:") and len(res.stdout) == len("All:") + 20 + 1
    direct = "".join(generate(exports["mingru"] / "export", "All:", 20, temperature=0.8, seed=1, variant=VARIANT))
    assert res.stdout == "All:" + direct + "\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "All~"], "outside the vocabulary: '~'"),
        (["--prompt", ""], "prompt is empty"),
        (["--variant", "int8-dynamic"], "no step.int8-dynamic.onnx; its step variants: fp32"),
        (["--variant", "Int8"], "lower-case"),
        (["--provider", "tensorrt"], "pip install 'rnnedge[gpu]'"),
        (["--provider", "tpu"], "unknown provider"),
        (["--top-k", "-2"], "top_k"),
        (["--temperature", "-1"], "temperature"),
        (["--on-unknown", "ignore"], "on_unknown"),
    ],
)
def test_cli_generate_bad_input_is_one_line(exports, args, message) -> None:
    res = runner.invoke(app, ["generate", str(exports["lstm"] / "export"), "-n", "5", *args])
    assert res.exit_code == 1
    assert message in res.stderr and res.stderr.count("\n") == 1 and "Traceback" not in res.output


def test_cli_wrong_files_are_one_line(exports, tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    for target, message in [
        (exports["lstm"] / "export" / "parallel.onnx", "parallel graph"),
        (tmp_path / "nothing", "not found"),
        (bad, "ONNX Runtime cannot load"),
    ]:
        res = subprocess.run(
            [sys.executable, "-m", "rnnedge.cli", "generate", str(target), "-p", "a"], capture_output=True, text=True
        )
        assert res.returncode == 1 and message in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
