"""minLM (mingru-pytorch 0.2.1) through the adapter: parity with the package's forward and its prev_hiddens
decoding, the conv state, export -> int8 -> drift -> generate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnedge.byom.minlm import MinLMAdapter, build_minlm, export_minlm
from rnnedge.cli import app
from rnnedge.runtime import ParallelSession, StepSession

minLM = pytest.importorskip("minGRU_pytorch.minLM").minLM
runner = CliRunner()
T = 256


def _model(use_lstm: bool, conv: bool = False, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return minLM(num_tokens=256, dim=32, depth=2, ff_mult=2, expansion=1.5, use_lstm=use_lstm, enable_conv=conv).eval()


def _zeros(adapter: MinLMAdapter, batch: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros(batch, *s.shape[1:]) for s in adapter.state_specs())


@pytest.mark.parametrize("use_lstm", [False, True])
def test_parallel_form_matches_package_forward(use_lstm):
    model = _model(use_lstm)
    adapter = MinLMAdapter(model)
    ids = torch.randint(0, 256, (2, T))
    with torch.no_grad():
        want = model(ids)  # the package's log-space scan
        got, _ = adapter(ids, _zeros(adapter, 2))
        ref64, _ = MinLMAdapter(_model(use_lstm).double())(ids, tuple(z.double() for z in _zeros(adapter, 2)))
    assert (got - want).abs().max() < 1e-4
    assert (got.double() - ref64).abs().max() < 1e-5  # the exact scan in fp32 vs the same in fp64


@pytest.mark.parametrize("use_lstm", [False, True])
def test_step_form_matches_prev_hiddens_decoding(use_lstm):
    model = _model(use_lstm)
    adapter = MinLMAdapter(model)
    ids = torch.randint(0, 256, (1, 48))
    state, hiddens = _zeros(adapter, 1), None
    with torch.no_grad():
        for t in range(ids.shape[1]):
            want, hiddens = model(ids[:, : t + 1], return_prev_hiddens=True, prev_hiddens=hiddens)  # last token only
            got, state = adapter(ids[:, t : t + 1], state)
            assert (got[:, -1] - want[:, -1]).abs().max() < 1e-5
    for layer, h in enumerate(hiddens):  # the package's next_prev_hidden is (B, 1, dim_inner)
        assert (state[layer] - h[:, 0]).abs().max() < 1e-5


def test_conv_state_carries_kernel_minus_one_inputs(tmp_path):
    model = _model(False, conv=True)
    adapter = MinLMAdapter(model)
    assert [s.name for s in adapter.state_specs()] == ["0.h", "0.conv", "1.h", "1.conv"]
    assert adapter.state_specs()[1].shape == ("batch", 2, 32)  # kernel 3 -> the last 2 inputs
    ids = torch.randint(0, 256, (1, 40))
    with torch.no_grad():
        want = model(ids)  # the package cannot decode the conv version step by step: compare with its forward
    export_minlm(model, tokenizer="bytes", out=tmp_path, max_seq_len=1024)
    sess = StepSession(tmp_path)
    got = np.stack([sess.feed(int(i))[0] for i in ids[0]])  # (T, V)
    assert np.abs(got - want[0].numpy()).max() < 1e-4


def test_state_dict_rebuild_and_cli(tmp_path):
    model = _model(True)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    rebuilt = build_minlm(torch.load(tmp_path / "m.pt", weights_only=True))
    ids = torch.randint(0, 256, (1, 20))
    with torch.no_grad():
        assert torch.equal(rebuilt(ids), model(ids))
    out = tmp_path / "o"
    res = runner.invoke(
        app,
        [
            "export",
            "--from",
            "mingru-pytorch",
            "--weights",
            str(tmp_path / "m.pt"),
            "--out",
            str(out),
            "--max-seq-len",
            "1024",
        ],
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["arch"] == "minlm-lstm" and manifest["source"]["use_lstm"] is True
    assert manifest["verification"]["passed"]
    bad = runner.invoke(
        app,
        [
            "export",
            "--from",
            "mingru-pytorch",
            "--weights",
            str(tmp_path / "m.pt"),
            "--rnn-type",
            "GRU",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 1 and "word-lm options" in bad.output


def test_exported_parallel_graph_matches_package(tmp_path):
    model = _model(False, seed=1)
    export_minlm(model, tokenizer="bytes", out=tmp_path, max_seq_len=1024)
    ids = torch.randint(0, 256, (1, T))
    with torch.no_grad():
        want = model(ids)[0].numpy()  # (T, V)
    sess = ParallelSession(tmp_path)
    logits, _ = sess.run(ids.numpy())  # zero state
    assert np.abs(logits[0] - want).max() < 1e-4
