"""Tokenizers beyond characters (torch-free): byte-level (256 ids) and a Hugging Face `tokenizers` JSON.

Every tokenizer has the interface of `rnnedge.vocab.CharVocab`: `encode(text, on_unknown)` -> int64 ids,
`decode(ids)` -> text, `len()`, `kind`, and `stream_decoder()` (a callable id -> the text that id adds,
for streamed generation; a multi-byte character split over byte tokens comes out once it is whole).

A graph's metadata names its tokenizer in `rnnedge.tokenizer` (graphmeta.py):
`{"kind": "bytes", "size": 256}` or `{"kind": "hf", "file": "tokenizer.json", "sha256": ..., "size": N}`;
the HF file ships next to the graph and is read (and its hash checked) on first use, so opening a graph
that only runs ids (a quantizer's temp copy, a benchmark) never needs it. Unknown text stays as strict as
with characters: a piece the tokenizer maps to its unknown token, or drops, raises UnknownCharacterError
naming it (on_unknown='skip' drops it).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import ConfigError, DependencyError, GraphError, RnnedgeError, UnknownCharacterError
from rnnedge.io import read_regular, read_text_file
from rnnedge.vocab import CharVocab, OnUnknown, describe_unknown

MAX_TOKENIZER_BYTES = 256 << 20  # a tokenizers JSON of a 250k-token vocabulary is ~20 MB

TOKENIZER_FILE = "tokenizer.json"
StreamDecoder = Callable[[int], str]


def _check_on_unknown(on_unknown: str) -> None:
    if on_unknown not in ("error", "skip"):
        raise ConfigError(f"on_unknown must be 'error' or 'skip', not {on_unknown!r}")


@dataclass(frozen=True)
class ByteTokenizer:
    """UTF-8 bytes as ids 0..255: every text encodes, nothing is ever unknown."""

    kind: str = field(default="bytes", init=False)

    def __len__(self) -> int:
        return 256

    def encode(self, text: str, on_unknown: OnUnknown = "error") -> np.ndarray:
        """Text -> int64 ids (its UTF-8 bytes)."""
        _check_on_unknown(on_unknown)
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Ids -> text (invalid UTF-8 sequences become U+FFFD); ids outside 0..255 raise."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise UnknownCharacterError(f"token id {int(arr[(arr < 0) | (arr > 255)][0])} is not a byte (0..255)")
        return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def stream_decoder(self) -> StreamDecoder:
        """id -> text, holding back the bytes of a character until it is complete."""
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda i: dec.decode(bytes([int(i)]))

    def to_entry(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": 256}


@dataclass(frozen=True)
class HFTokenizer:
    """A Hugging Face `tokenizers` JSON (BPE / WordPiece / Unigram), read lazily from `path`.

    Equality is the file's content (sha256) and size, not where it lies."""

    sha256: str
    size: int
    path: Path | None = field(default=None, compare=False)
    file: str = TOKENIZER_FILE
    kind: str = field(default="hf", init=False)
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @classmethod
    def from_file(cls, path: str | Path) -> HFTokenizer:
        """Load and check a tokenizer JSON now (ConfigError if it is not one)."""
        p = Path(path)
        try:
            data = read_regular(p, MAX_TOKENIZER_BYTES, "tokenizer")
        except RnnedgeError as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(f"cannot read tokenizer {p}: {exc.strerror or exc}") from exc
        tok = _parse(data, str(p))
        made = cls(hashlib.sha256(data).hexdigest(), int(tok.get_vocab_size(with_added_tokens=True)), p)
        made._cache["tok"] = tok
        made._cache["bytes"] = data
        return made

    def __len__(self) -> int:
        return self.size

    def file_bytes(self) -> bytes:
        self._load()
        return bytes(self._cache["bytes"])

    def _load(self) -> Any:
        with self._lock:
            if "tok" in self._cache:
                return self._cache["tok"]
            if self.path is None:
                raise GraphError(
                    f"this graph's tokenizer ({self.file}) is read from next to the graph file; open it by path"
                )
            try:
                data = read_regular(self.path, MAX_TOKENIZER_BYTES, "tokenizer")
            except RnnedgeError as exc:
                raise GraphError(str(exc)) from None
            except OSError as exc:
                raise GraphError(
                    f"tokenizer {self.path} (named by the graph's metadata) cannot be read: {exc.strerror or exc}"
                ) from exc
            digest = hashlib.sha256(data).hexdigest()
            if digest != self.sha256:
                raise GraphError(
                    f"tokenizer {self.path} does not match the graph "
                    f"(sha256 {digest[:12]}…, graph says {self.sha256[:12]}…)"
                )
            tok = _parse(data, str(self.path))
            if tok.get_vocab_size(with_added_tokens=True) != self.size:
                raise GraphError(
                    f"tokenizer {self.path} has {tok.get_vocab_size(with_added_tokens=True)} tokens, "
                    f"the graph {self.size}"
                )
            self._cache.update(tok=tok, bytes=data)
            return tok

    def _unk_id(self) -> int | None:
        """The unknown token's id: the model's `unk_token` (BPE, WordPiece) or `unk_id` (Unigram), if any."""
        tok = self._load()
        if "unk" not in self._cache:
            model = json.loads(self._cache["bytes"]).get("model", {})
            unk_id = model.get("unk_id") if isinstance(model, dict) else None
            unk = model.get("unk_token") if isinstance(model, dict) else None
            self._cache["unk"] = (
                int(unk_id) if isinstance(unk_id, int) else (None if unk is None else tok.token_to_id(unk))
            )
        value: int | None = self._cache["unk"]
        return value

    def encode(self, text: str, on_unknown: OnUnknown = "error") -> np.ndarray:
        """Text -> int64 ids. Text the tokenizer maps to its unknown token, or silently drops (a non-space
        character no token covers), raises UnknownCharacterError naming it; 'skip' drops such tokens."""
        _check_on_unknown(on_unknown)
        enc = self._load().encode(text, add_special_tokens=False)
        ids = np.asarray(enc.ids, dtype=np.int64)
        unk = self._unk_id()
        bad_tok = ids == unk if unk is not None else np.zeros(ids.shape, dtype=bool)
        covered = np.zeros(len(text), dtype=bool)
        for (start, end), is_bad in zip(enc.offsets, bad_tok.tolist(), strict=True):
            if not is_bad:
                covered[start:end] = True
        dropped = [i for i, ok in enumerate(covered.tolist()) if not ok and not text[i].isspace()]
        if dropped and on_unknown == "error":
            raise UnknownCharacterError(
                describe_unknown(text, np.asarray(dropped)).replace("the vocabulary", "the tokenizer")
            )
        return ids[~bad_tok]

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Ids -> text; ids outside the tokenizer raise."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.size):
            raise UnknownCharacterError(
                f"token id {int(arr[(arr < 0) | (arr >= self.size)][0])} is outside the tokenizer (size {self.size})"
            )
        return str(self._load().decode(arr.tolist(), skip_special_tokens=False))

    def stream_decoder(self) -> StreamDecoder:
        """id -> the text it adds: the last 32 ids decoded with and without it (subword joins stay right);
        a token that ends inside a multi-byte character adds nothing until the character is whole."""
        tok = self._load()
        seen: list[int] = []
        pending: list[int] = []

        def step(i: int) -> str:
            pending.append(int(i))
            before = str(tok.decode(seen, skip_special_tokens=False))
            new = _suffix(before, str(tok.decode(seen + pending, skip_special_tokens=False)))
            if new.endswith("\ufffd") and len(pending) < 4:
                return ""
            seen.extend(pending)
            pending.clear()
            del seen[:-32]
            return new

        return step

    def to_entry(self) -> dict[str, Any]:
        return {"kind": self.kind, "file": self.file, "sha256": self.sha256, "size": self.size}


def _suffix(before: str, after: str) -> str:
    """What `after` adds to `before` (the part past their common prefix)."""
    n = 0
    for a, b in zip(before, after, strict=False):
        if a != b:
            break
        n += 1
    return after[n:]


def _parse(data: bytes, where: str) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise DependencyError(
            "a Hugging Face tokenizer needs the 'tokenizers' package: pip install 'rnnedge[byom]'"
        ) from exc
    try:
        return Tokenizer.from_str(data.decode("utf-8"))
    except Exception as exc:  # tokenizers raises its own Exception type for bad JSON
        raise ConfigError(f"{where} is not a Hugging Face tokenizers JSON: {str(exc).splitlines()[0][:200]}") from exc


Tokenizer = CharVocab | ByteTokenizer | HFTokenizer


def from_entry(entry: Any, base: Path | None, source: str) -> ByteTokenizer | HFTokenizer:
    """The tokenizer a graph's `rnnedge.tokenizer` entry names (HF: read lazily from `base`/file)."""
    if not isinstance(entry, dict):
        raise GraphError(f"{source}: rnnedge.tokenizer is not an object")
    kind = entry.get("kind")
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "hf":
        name, digest, size = entry.get("file"), entry.get("sha256"), entry.get("size")
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise GraphError(f"{source}: rnnedge.tokenizer names no plain file name ({name!r})")
        if not isinstance(digest, str) or len(digest) != 64 or not isinstance(size, int) or not 1 <= size <= 1 << 24:
            raise GraphError(f"{source}: rnnedge.tokenizer has a damaged sha256 or size")
        return HFTokenizer(digest, size, None if base is None else base / name, name)
    raise GraphError(f"{source}: unknown tokenizer kind {kind!r} (this rnnedge reads char, bytes, hf)")


def to_entry(tok: Tokenizer) -> dict[str, Any] | None:
    """The metadata entry for a tokenizer; None for characters (they live in rnnedge.vocab, as before)."""
    return None if isinstance(tok, CharVocab) else tok.to_entry()


def resolve(spec: Any) -> Tokenizer:
    """A tokenizer from what a user passes: a tokenizer object, 'bytes', 'char:<characters>', or a path
    to a tokenizers JSON (or to a text file whose characters become the vocabulary with 'chars:PATH')."""
    if isinstance(spec, (CharVocab, ByteTokenizer, HFTokenizer)):
        return spec
    if not isinstance(spec, (str, Path)):
        raise ConfigError(
            "tokenizer must be 'bytes', 'char:<chars>', 'chars:<text file>' or a tokenizers JSON path, "
            f"not {type(spec).__name__}"
        )
    text = str(spec)
    if text in ("bytes", "byte"):
        return ByteTokenizer()
    if text.startswith("char:"):
        return CharVocab(text[5:])
    if text.startswith("chars:"):
        path = Path(text[6:])
        try:
            return CharVocab.from_text(read_text_file(path, "vocabulary text"))
        except RnnedgeError as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        if path.is_file() and path.suffix == ".json":
            try:
                json.loads(read_regular(path, MAX_TOKENIZER_BYTES, "tokenizer").decode("utf-8"))
            except RnnedgeError as exc:
                raise ConfigError(str(exc)) from None
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise ConfigError(f"tokenizer {path} is not JSON: {exc}") from exc
        return HFTokenizer.from_file(path)
    raise ConfigError(f"tokenizer {text!r} is none of 'bytes', 'char:<chars>', 'chars:<text file>', a tokenizers JSON")


def stream_decoder(tok: Any) -> StreamDecoder:
    """id -> text for any tokenizer (characters: one character per id)."""
    if isinstance(tok, CharVocab):
        chars = tok.chars
        return lambda i: chars[int(i)]
    decoder: StreamDecoder = tok.stream_decoder()
    return decoder
