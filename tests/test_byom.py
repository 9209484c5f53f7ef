"""Bring your own model: the protocol, the word_language_model adapter, refusals, the --from CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

import rnnedge
from rnnedge.byom import StateSpec
from rnnedge.byom.word_lm import export_word_lm, from_module, from_state_dict
from rnnedge.cli import app
from rnnedge.errors import ConfigError, VerificationError
from rnnedge.runtime import StepSession
from rnnedge.vocab import CharVocab
from tests.conftest import TEXT

runner = CliRunner()
DATA = Path("/work/shared/data/tinyshakespeare.txt")


def shakespeare(chars: int) -> str:
    """The first `chars` characters of tiny-shakespeare (the conftest text where the file is absent)."""
    return DATA.read_text(encoding="utf-8")[:chars] if DATA.is_file() else (TEXT * 4)[:chars]


SHORT = {"max_seq_len": 1024}  # fewer doubling passes; nothing here runs longer texts


class RNNModel(nn.Module):
    """pytorch/examples word_language_model/model.py's RNNModel, as a user has it (not rnnedge code)."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False, batch_first=False):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ("LSTM", "GRU"):
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout, batch_first=batch_first)
        else:
            nonlin = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlin, dropout=dropout, batch_first=batch_first)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    text = shakespeare(6000)
    path = tmp_path_factory.mktemp("text") / "held.txt"
    path.write_text(text[3000:], encoding="utf-8")
    return text, path


def _word_lm(vocab: int, rnn_type="LSTM", tie=True, batch_first=False, seed=0) -> RNNModel:
    torch.manual_seed(seed)
    return RNNModel(rnn_type, vocab, 24, 24, 2, dropout=0.2, tie_weights=tie, batch_first=batch_first).eval()


def test_word_lm_lstm_export_quantize_drift_generate(tmp_path, corpus):
    text, held = corpus
    vocab = CharVocab.from_text(text)
    model = _word_lm(len(vocab))
    out = tmp_path / "lstm"
    result = export_word_lm(model, tokenizer=vocab, out=out, **SHORT)
    assert all(c.passed for c in result.checks)
    assert [s["name"] for s in json.loads(_meta(out / "step.onnx")["rnnedge.states"])] == ["0.h", "0.c", "1.h", "1.c"]
    # The step graph against the user's own module (torch layout (h, c) [layers, batch, hidden], T-major ids).
    ids = vocab.encode(text[:60])
    with torch.no_grad():
        want, (_, c) = model(torch.from_numpy(ids)[:, None], None)  # (T, V) log-probs
    sess = StepSession(out)
    got = np.stack([sess.feed(int(i)) for i in ids])[:, 0]  # (T, V) logits
    top = got.max(-1, keepdims=True)
    got = got - top - np.log(np.exp(got - top).sum(-1, keepdims=True))  # log_softmax, as the module returns
    assert np.abs(got - want.numpy()).max() < 1e-4
    assert np.abs(sess.state["1.c"][0] - c[1, 0].numpy()).max() < 1e-4  # layer 1's c, torch's [layers, B, H]

    q = runner.invoke(app, ["quantize", str(out), "--method", "int8-dynamic", "--eval", str(held)])
    assert q.exit_code == 0, q.output
    assert (out / "step.int8-dynamic.onnx").is_file()
    d = runner.invoke(
        app,
        [
            "drift",
            str(out),
            "--data",
            str(held),
            "--variant",
            "int8-dynamic",
            "--steps",
            "128",
            "--out",
            str(tmp_path / "d"),
        ],
    )
    assert d.exit_code == 0, d.output
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report  # per-timestep curves were written
    g = runner.invoke(
        app, ["generate", str(out), "-p", "ROMEO:", "-n", "30", "--variant", "int8-dynamic", "--seed", "0"]
    )
    assert g.exit_code == 0, g.output
    assert g.output.startswith("ROMEO:") and len(g.output.strip()) == len("ROMEO:") + 30
    e = runner.invoke(app, ["eval", str(out), "--data", str(held)])
    assert e.exit_code == 0 and "nats/char" in e.output


def _meta(path):
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize(("rnn_type", "tie", "batch_first"), [("GRU", False, True), ("RNN_RELU", False, False)])
def test_word_lm_other_cells(tmp_path, rnn_type, tie, batch_first):
    model = _word_lm(40, rnn_type, tie, batch_first)
    result = export_word_lm(model, tokenizer="char:" + "".join(chr(65 + i) for i in range(40)), out=tmp_path, **SHORT)
    assert result.manifest["source"]["rnn_type"] == rnn_type
    assert all(c.passed for c in result.checks)


def test_word_lm_from_state_dict_matches_module():
    model = _word_lm(30)
    weights = {k: v for k, v in model.state_dict().items() if k != "decoder.weight"}  # tied: stored once
    rebuilt = from_state_dict(weights)
    assert rebuilt.rnn_type == "LSTM" and rebuilt.decoder.weight is rebuilt.encoder.weight
    ref = from_module(model)
    ids = torch.randint(0, 30, (2, 9))
    zeros = tuple(torch.zeros(2, 24) for _ in range(4))
    with torch.no_grad():
        assert torch.allclose(rebuilt(ids, zeros)[0], ref(ids, zeros)[0])
    with pytest.raises(ConfigError, match="does not match the weights"):
        from_state_dict(weights, rnn_type="GRU")


class HandLSTM(nn.Module):
    """A hand-written LM on the protocol: state (h, c) as torch holds it, [layers, batch, hidden]."""

    def __init__(self, vocab=256, d=32, layers=2):
        super().__init__()
        self.emb, self.rnn, self.head = (
            nn.Embedding(vocab, d),
            nn.LSTM(d, d, layers, batch_first=True),
            nn.Linear(d, vocab),
        )

    def forward(self, ids, states):
        y, (h, c) = self.rnn(self.emb(ids), states)
        return self.head(y), (h, c)


STATES = [StateSpec("h", (2, "batch", 32)), StateSpec("c", (2, "batch", 32))]


def test_protocol_hand_written_model_runs_on_runtime(tmp_path):
    torch.manual_seed(0)
    model = HandLSTM().eval()
    out = tmp_path / "mine"
    rnnedge.export(model, states=STATES, tokenizer="bytes", out=out, **SHORT)
    sess = StepSession(out)
    assert sess.state_names == ["0.h", "0.c"]
    ids = np.frombuffer("héllo".encode(), dtype=np.uint8).astype(np.int64)
    got = sess.feed_sequence(ids)
    with torch.no_grad():
        want, _ = model(torch.from_numpy(ids)[None], (torch.zeros(2, 1, 32), torch.zeros(2, 1, 32)))
    assert np.abs(got[0] - want[0, -1].numpy()).max() < 1e-4


class NaNLM(HandLSTM):
    def __init__(self):
        super().__init__()
        with torch.no_grad():
            self.head.weight[3, 4] = float("nan")


class WrongState(HandLSTM):
    def forward(self, ids, states):
        logits, (h, c) = super().forward(ids, states)
        return logits, (h[:, :, :16], c)


class TwoFaced(HandLSTM):
    def forward(self, ids, states):
        logits, st = super().forward(ids, states)
        return (logits + 0.01 if ids.shape[1] == 1 else logits), st


@pytest.mark.parametrize(
    ("model", "tokenizer", "error", "match"),
    [
        (NaNLM, "bytes", ConfigError, "head.weight holds 1 NaN"),
        (WrongState, "bytes", ConfigError, r"state 'h': the module returns \[2, 2, 16\]"),
        (TwoFaced, "bytes", VerificationError, "step form .* and its parallel form .* disagree"),
        (HandLSTM, "char:abc", ConfigError, r"expected \[2, 5, 3\]"),
        (lambda: HandLSTM(vocab=100), "bytes", ConfigError, "cannot take token ids up to 255"),
    ],
)
def test_refusals_write_nothing(tmp_path, model, tokenizer, error, match):
    out = tmp_path / "never"
    with pytest.raises(error, match=match):
        rnnedge.export(model().eval(), states=STATES, tokenizer=tokenizer, out=out)
    assert not out.exists()


def test_refusal_is_one_cli_line(tmp_path):
    torch.manual_seed(0)
    model = _word_lm(256)
    with torch.no_grad():
        model.rnn.weight_hh_l1[0, 0] = float("inf")
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    res = runner.invoke(app, ["export", "--from", "word-lm", "--weights", str(weights), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        "rnnedge: error: weight rnn.weight_hh_l1 holds 1 NaN/inf value(s); refusing to export (nothing written)"
    ]
    assert not (tmp_path / "o").exists()


def test_cli_from_word_lm_safetensors_and_bad_inputs(tmp_path):
    model = _word_lm(256, tie=False)
    save_file(dict(model.state_dict()), str(tmp_path / "w.safetensors"))
    args = ["export", "--from", "word-lm", "--weights", str(tmp_path / "w.safetensors"), "--max-seq-len", "1024"]
    ok = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--tokenizer", "bytes"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["source"]["adapter"] == "word-lm"
    torch.save({"layer": nn.Linear(2, 2)}, tmp_path / "pickle.pt")  # a pickled module, not a state_dict
    cases = [
        (["export", "--from", "bogus", "--weights", str(tmp_path / "w.safetensors")], "--from must be one of"),
        (["export", "--from", "word-lm", "--weights", str(tmp_path / "pickle.pt")], "weights_only=True"),
        (["export", "--from", "word-lm"], "needs --weights FILE"),
        (
            ["export", "--from", "word-lm", "--weights", str(tmp_path / "w.safetensors"), "--tokenizer", "char:ab"],
            "expected",
        ),
    ]
    for argv, msg in cases:
        res = runner.invoke(app, [*argv, "--out", str(tmp_path / "bad")])
        assert res.exit_code == 1 and msg in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_damaged_weight_files_are_one_line(tmp_path):
    model = _word_lm(256, tie=False)
    save_file(dict(model.state_dict()), str(tmp_path / "w.safetensors"))
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:500])
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    bi = nn.LSTM(24, 24, 1, bidirectional=True)
    torch.save(
        {"encoder.weight": model.encoder.weight, **{f"rnn.{k}": v for k, v in bi.state_dict().items()}},
        tmp_path / "bi.pt",
    )
    cases = {
        "cut.safetensors": "not a readable safetensors file",
        "empty.pt": "weights_only=True",
        "list.pt": "holds no state_dict",
        "missing.pt": "weights file not found",
        "bi.pt": "reverse direction",
    }
    for name, msg in cases.items():
        res = runner.invoke(
            app, ["export", "--from", "word-lm", "--weights", str(tmp_path / name), "--out", str(tmp_path / "o")]
        )
        assert res.exit_code == 1 and msg in res.output and len(res.output.strip().splitlines()) == 1, (
            name,
            res.output,
        )
    assert not (tmp_path / "o").exists()
    ok = runner.invoke(
        app,
        [
            "export",
            "--from",
            "word-lm",
            "--weights",
            str(tmp_path / "wrapped.pt"),
            "--out",
            str(tmp_path / "o"),
            "--max-seq-len",
            "1024",
        ],
    )
    assert ok.exit_code == 0, ok.output
