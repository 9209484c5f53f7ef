"""Texts are read one way everywhere (rnnedge.io.iter_text): streamed in pieces, CR and CRLF as LF,
bounded; training keeps them as a compact id array."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from rnnedge.errors import RnnedgeError
from rnnedge.io import iter_text, normalize_newlines, read_text_file
from rnnedge.training import data as data_mod
from rnnedge.vocab import CharVocab

RAW = "a\r\nb\rc\n\r\r\nd" + "é€" * 3 + "\r"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 4096])
def test_pieces_join_to_the_normalized_text_at_any_chunk_size(chunk: int, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(RAW.encode("utf-8"))
    sha = hashlib.sha256()
    assert "".join(iter_text(path, chunk_bytes=chunk, hasher=sha)) == "a\nb\nc\n\n\nd" + "é€" * 3 + "\n"
    assert sha.hexdigest() == hashlib.sha256(RAW.encode("utf-8")).hexdigest()  # the raw bytes, all of them
    assert "".join(iter_text(path, chunk_bytes=chunk, max_chars=4)) == "a\nb\n"
    assert normalize_newlines(RAW) == read_text_file(path)


def test_a_bad_byte_is_named_by_its_offset_and_a_cap_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"x" * 10 + b"\xff" + b"y" * 30)
    with pytest.raises(RnnedgeError, match="byte 10"):
        read_text_file(path)
    with pytest.raises(RnnedgeError, match="too large"):
        read_text_file(path, limit=5)
    assert read_text_file(path, limit=5, max_chars=2) == "xx"  # a prefix reads no further, needs no cap


def test_training_text_is_a_compact_array_equal_to_encoding_it_whole(tmp_path: Path) -> None:
    text = ("To be, or not to be:\r\nthat is the question.\r" * 40) + "é"
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    loaded, record = data_mod.load_text_data(str(path), path, vocab=None, seq_len=8)
    whole = data_mod.prepare(normalize_newlines(text), seq_len=8)
    assert loaded.train.dtype.itemsize == 1 and loaded.vocab == whole.vocab and "\r" not in loaded.vocab.chars
    assert np.array_equal(loaded.train.numpy(), whole.train.numpy())
    assert np.array_equal(loaded.val.numpy(), whole.val.numpy())
    assert record == {
        "name": "t.txt",
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "chars": len(normalize_newlines(text)),
    }
    batch = data_mod.BatchSampler(loaded.train, 2, 8, seed=0).sample(0)
    assert batch.dtype.is_floating_point is False and batch.dtype.itemsize == 8  # int64 for the embedding


def test_vectorized_encode_matches_the_characters() -> None:
    vocab = CharVocab("zay\n€")  # not sorted: ids are positions in `chars`
    ids = vocab.encode("a€\nzy")
    assert ids.tolist() == [1, 4, 3, 0, 2] and ids.dtype == np.int64
    assert vocab.encode("aqz", on_unknown="skip", dtype=np.uint8).tolist() == [1, 0]
    with pytest.raises(RnnedgeError, match="'q' at position 1"):
        vocab.encode("aqz")
    with pytest.raises(RnnedgeError, match="surrogate"):
        CharVocab("ab\ud800")
