"""Tokenizers beyond characters: byte-level, a BPE trained here with `tokenizers`, shipped next to the graph;
a minLM with the BPE through export -> int8-dynamic -> drift -> generate -> eval."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.errors import GraphError, UnknownCharacterError
from rnnedge.runtime import StepSession, evaluate_export
from rnnedge.tokenizer import ByteTokenizer, HFTokenizer, resolve, stream_decoder
from tests.test_byom import shakespeare

tokenizers = pytest.importorskip("tokenizers")
minLM = pytest.importorskip("minGRU_pytorch.minLM").minLM
runner = CliRunner()


def _bpe(path, byte_level: bool) -> HFTokenizer:
    """A ~300-token BPE trained on 4 KB of tiny-shakespeare."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        alphabet = []
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"], initial_alphabet=alphabet)
    tok.train_from_iterator([shakespeare(4000)], trainer)
    tok.save(str(path))
    return HFTokenizer.from_file(path)


def test_byte_tokenizer_roundtrip_and_streaming():
    tok = ByteTokenizer()
    text = "héllo ✓ — ROMEO"
    ids = tok.encode(text)
    assert len(tok) == 256 and ids.dtype == np.int64 and tok.decode(ids) == text
    decode = stream_decoder(tok)
    pieces = [decode(int(i)) for i in ids]
    assert "".join(pieces) == text and "" in pieces  # a multi-byte character comes out once whole
    with pytest.raises(UnknownCharacterError):
        tok.decode([300])


def test_bpe_unknown_text_is_strict(tmp_path):
    tok = _bpe(tmp_path / "ws.json", byte_level=False)
    ids = tok.encode("ROMEO: my lord")
    assert tok.decode(ids).replace(" ", "") == "ROMEO:mylord"
    with pytest.raises(UnknownCharacterError, match="'😀' at position 3"):
        tok.encode("my 😀 lord")
    assert tok.decode(tok.encode("my 😀 lord", on_unknown="skip")).replace(" ", "") == "mylord"


def test_minlm_with_bpe_end_to_end(tmp_path):
    tok = _bpe(tmp_path / "bpe.json", byte_level=True)
    held = tmp_path / "held.txt"
    held.write_text(shakespeare(9000)[5000:], encoding="utf-8")
    torch.manual_seed(0)
    model = minLM(num_tokens=len(tok), dim=32, depth=2, ff_mult=2, expansion=1.5).eval()
    from rnnedge.byom.minlm import export_minlm

    out = tmp_path / "bpe_out"
    export_minlm(model, tokenizer=tmp_path / "bpe.json", out=out, max_seq_len=1024)
    shipped = (out / "tokenizer.json").read_bytes()
    assert shipped == (tmp_path / "bpe.json").read_bytes()
    sess = StepSession(out)
    entry = json.loads(sess.graph.session.get_modelmeta().custom_metadata_map["rnnedge.tokenizer"])
    assert entry == {"kind": "hf", "file": "tokenizer.json", "sha256": hashlib.sha256(shipped).hexdigest(), "size": 300}
    assert sess.vocab == tok  # same file content, wherever it lies

    q = runner.invoke(app, ["quantize", str(out), "--method", "int8-dynamic", "--eval", str(held)])
    assert q.exit_code == 0, q.output
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
    g = runner.invoke(
        app, ["generate", str(out), "-p", "ROMEO:", "-n", "20", "--variant", "int8-dynamic", "--seed", "1"]
    )
    assert g.exit_code == 0 and g.output.startswith("ROMEO:"), g.output

    text = held.read_text(encoding="utf-8")
    result = evaluate_export(out, text)
    ids = tok.encode(text)
    assert result["tokens"] == len(ids) - 1 < len(text) - 1  # subwords: fewer tokens than characters
    # per character: the same total NLL over the characters the predicted tokens cover
    predicted_chars = len(text) - len(tok.decode(ids[:1]))
    assert result["nats_per_char"] == pytest.approx(result["loss_nats"] * (len(ids) - 1) / predicted_chars, rel=1e-6)
    e = runner.invoke(app, ["eval", str(out), "--data", str(held)])
    assert e.exit_code == 0 and "nats/token" in e.output and "bits/byte" in e.output

    (out / "tokenizer.json").write_bytes(shipped.replace(b'"[UNK]"', b'"[UNK2]"', 1))  # a different file
    with pytest.raises(GraphError, match="does not match the graph"):
        StepSession(out).vocab.encode("ROMEO")
    bad = runner.invoke(app, ["generate", str(out), "-p", "ROMEO:", "-n", "5"])
    assert bad.exit_code == 1 and len(bad.output.strip().splitlines()) == 1


def test_unigram_unknown_is_strict(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        [shakespeare(4000)], trainers.UnigramTrainer(vocab_size=200, special_tokens=["<unk>"], unk_token="<unk>")
    )
    tok.save(str(tmp_path / "uni.json"))
    uni = HFTokenizer.from_file(tmp_path / "uni.json")
    with pytest.raises(UnknownCharacterError, match="'😀' at position 3"):
        uni.encode("my 😀 lord")
    assert 0 not in uni.encode("my 😀 lord", on_unknown="skip").tolist()  # <unk> (id 0) dropped


def test_resolve_specs(tmp_path):
    assert len(resolve("bytes")) == 256
    assert len(resolve("char:abc")) == 3
    (tmp_path / "t.txt").write_text("hello", encoding="utf-8")
    assert resolve(f"chars:{tmp_path / 't.txt'}").chars == "ehlo"
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(Exception, match="not JSON"):
        resolve(tmp_path / "bad.json")


def test_char_graphs_keep_format_2_metadata():
    from rnnedge.graphmeta import GraphInfo, make_state, parse_metadata
    from rnnedge.vocab import CharVocab

    states = (make_state("0.h", ("batch", 4)),)
    char = GraphInfo("step", CharVocab("abc"), {"arch": "mingru"}, states, "0.1.0").to_metadata()
    assert list(char)[:4] == ["rnnedge.format", "rnnedge.version", "rnnedge.graph", "rnnedge.vocab"]
    assert char["rnnedge.format"] == "2" and "rnnedge.tokenizer" not in char
    byte = GraphInfo("step", ByteTokenizer(), {"arch": "custom"}, states, "0.1.0").to_metadata()
    assert byte["rnnedge.format"] == "3" and "rnnedge.vocab" not in byte
    assert parse_metadata(byte).vocab == ByteTokenizer()
    unknown = {**byte, "rnnedge.tokenizer": json.dumps({"kind": "sentencepiece"})}
    with pytest.raises(GraphError, match="unknown tokenizer kind"):
        parse_metadata(unknown, source="x.onnx")
