"""Training text: load a file (or the cached tiny-shakespeare), split train/val, sample batches."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnedge.errors import ConfigError, RnnedgeError
from rnnedge.io import display_name, iter_text, read_text_file, write_bytes
from rnnedge.vocab import CharVocab, ids_dtype

SHAKESPEARE = "shakespeare"
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_FILE = "tinyshakespeare.txt"
VAL_FRACTION = 0.1  # the last 10% of the text is validation (as nanoGPT's shakespeare_char does)


class DataError(RnnedgeError):
    """The training text is missing, empty, not UTF-8 or cannot be downloaded."""


def cache_dir() -> Path:
    """`$RNNEDGE_CACHE`, else ~/.cache/rnnedge."""
    env = os.environ.get("RNNEDGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rnnedge"


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file whole (line endings normalized: rnnedge.io.normalize_newlines); missing,
    empty or undecodable files raise DataError."""
    p = _existing(path)
    try:
        text = read_text_file(p, "text file")  # never /dev/zero or a FIFO
    except OSError as exc:
        raise DataError(f"cannot read {display_name(p)}: {exc.strerror or exc}") from None
    except RnnedgeError as exc:
        raise DataError(str(exc)) from None
    if not text:
        raise DataError(f"{display_name(p)} is empty")
    return text


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"text file not found: {display_name(p)}")
    return p


def shakespeare_path(*, download: bool = True, url: str = SHAKESPEARE_URL, timeout: float = 30.0) -> Path:
    """Path of the cached tiny-shakespeare text, downloading it (atomically) on first use."""
    target = cache_dir() / SHAKESPEARE_FILE
    if target.is_file() and target.stat().st_size > 0:
        return target
    if not download:
        raise DataError(f"tiny-shakespeare is not cached at {target}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"cannot download tiny-shakespeare from {url} ({reason}); you may be offline: "
            f"pass --data PATH to a local text file, or place the text at {target}"
        ) from None
    if not data:
        raise DataError(f"downloaded tiny-shakespeare from {url} is empty")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"downloaded tiny-shakespeare from {url} is not UTF-8 text") from None
    write_bytes(target, data)
    return target


def resolve_data(data: str | os.PathLike[str]) -> Path:
    """`shakespeare` -> the cached download; anything else is a local path (works offline)."""
    if str(data) == SHAKESPEARE:
        return shakespeare_path()
    return Path(data).expanduser()


def recorded_sha256(training: dict[str, Any]) -> str | None:
    """The sha256 of the text a checkpoint was trained on (rnnedge 0.1 kept it as `data_sha256`)."""
    record = training.get("data")
    if isinstance(record, dict):
        return record.get("sha256")
    return training.get("data_sha256")


def resume_source(training: dict[str, Any], resume: str | os.PathLike[str]) -> str:
    """The --data a resumed run reads when none is given: the named dataset it was trained on (or the
    path an rnnedge 0.1 checkpoint recorded); ConfigError naming the text otherwise."""
    record = training.get("data")
    if isinstance(record, str) and record:
        return record  # rnnedge 0.1 recorded the path itself
    if isinstance(record, dict) and record.get("dataset") == SHAKESPEARE:
        return SHAKESPEARE
    if isinstance(record, dict) and record.get("name"):
        chars = record.get("chars")
        size = f"{chars:,} characters, " if isinstance(chars, int) else ""
        sha = str(record.get("sha256") or "?")[:12]
        raise ConfigError(
            f"--data is required to resume {resume}: it was trained on {record['name']} "
            f"({size}sha256 {sha}…); pass --data PATH to that text"
        )
    raise ConfigError(f"--data is required to resume {resume} (its checkpoint does not name its training text)")


@dataclass(frozen=True)
class TextData:
    """A text encoded with its vocabulary and split into train (first 90%) and val (last 10%)."""

    vocab: CharVocab
    train: torch.Tensor  # (N_train,) compact ids (uint8 / int16 / int32: vocab.ids_dtype); .long() to use
    val: torch.Tensor  # (N_val,) same dtype
    source: str


def _split(ids: np.ndarray, vocab: CharVocab, seq_len: int, source: str) -> TextData:
    n_val = int(len(ids) * VAL_FRACTION)
    tensor = torch.from_numpy(ids)  # (N,) shares the compact array
    train, val = tensor[: len(ids) - n_val], tensor[len(ids) - n_val :]
    need = seq_len + 1
    if len(train) < need or len(val) < need:
        raise ConfigError(
            f"{source} is too short for --seq-len {seq_len}: {len(train)} train and {len(val)} val characters "
            f"(each split needs at least {need}); use a longer text or a shorter --seq-len"
        )
    return TextData(vocab=vocab, train=train, val=val, source=source)


def prepare(text: str, *, vocab: CharVocab | None = None, seq_len: int, source: str = "<text>") -> TextData:
    """Encode `text` (building a vocabulary unless given) and split it; both splits must fit a window."""
    vocab = vocab or CharVocab.from_text(text)
    return _split(vocab.encode(text, on_unknown="error", dtype=ids_dtype(len(vocab))), vocab, seq_len, source)


def load_text_data(
    data: str | os.PathLike[str],
    path: Path,
    *,
    vocab: CharVocab | None,
    seq_len: int,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[TextData, dict[str, Any]]:
    """The training text at `path`, streamed: one pass finds its characters, length and sha256, a second
    encodes it piece by piece into a compact id array (1 byte per character for up to 256 characters),
    so a 200 MB text never exists as one str or a list of ints.

    Returns it with what a checkpoint records about it (no machine paths): the file name, the sha256
    of its bytes, its length in characters, and `dataset` when it was a named download (so a resume
    can fetch it again). `check(record)` runs between the passes (a resume's "same text?")."""
    p = _existing(path)
    name = display_name(p)
    sha, seen, chars = hashlib.sha256(), set(), 0
    try:
        for piece in iter_text(p, "text file", hasher=sha):
            seen.update(piece)
            chars += len(piece)
        if not chars:
            raise DataError(f"{name} is empty")
        record: dict[str, Any] = {"name": display_name(p.name), "sha256": sha.hexdigest(), "chars": chars}
        if str(data) == SHAKESPEARE:
            record["dataset"] = SHAKESPEARE
        if check is not None:
            check(record)
        vocab = vocab or CharVocab("".join(sorted(seen)))
        ids = np.empty(chars, dtype=ids_dtype(len(vocab)))  # (N,)
        at = 0
        for piece in iter_text(p, "text file"):
            if at + len(piece) > chars:
                raise DataError(f"{name} changed while it was read")
            try:
                ids[at : at + len(piece)] = vocab.encode(piece, on_unknown="error", dtype=ids.dtype)
            except RnnedgeError as exc:
                raise DataError(f"{name}: characters from position {at:,}: {exc}") from None
            at += len(piece)
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None
    except (DataError, ConfigError):
        raise  # already worded (a resume's "not the same text" included)
    except RnnedgeError as exc:
        raise DataError(str(exc)) from None
    if at != chars:
        raise DataError(f"{name} changed while it was read")
    return _split(ids, vocab, seq_len, str(path)), record


class BatchSampler:
    """Random (B, T+1) windows of a token stream.

    The batch of step `s` on rank `r` depends only on (seed, r, s), so a resumed run draws exactly
    the batches an uninterrupted one would, and data-parallel ranks draw different ones.
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int, seed: int, rank: int = 0) -> None:
        if len(ids) < seq_len + 1:
            raise ConfigError(f"{len(ids)} tokens cannot fill a window of {seq_len + 1}")
        self.ids = ids
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.rank = rank
        self._offsets = torch.arange(seq_len + 1)  # (T+1,)

    def sample(self, step: int) -> torch.Tensor:
        """The batch for `step`, (B, T+1) int64: inputs are [:, :-1], targets [:, 1:]."""
        key = int(np.random.SeedSequence([self.seed, self.rank, step]).generate_state(1, dtype=np.uint64)[0] >> 1)
        gen = torch.Generator().manual_seed(key)
        high = len(self.ids) - self.seq_len  # starts in [0, high)
        starts = torch.randint(0, high, (self.batch_size,), generator=gen)  # (B,)
        return self.ids[starts[:, None] + self._offsets[None, :]].long()  # (B, T+1)
