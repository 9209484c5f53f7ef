"""Training text: load a file (or the cached tiny-shakespeare), split train/val, sample batches."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnedge.errors import ConfigError, RnnedgeError
from rnnedge.io import MAX_TEXT_BYTES, read_regular, write_bytes
from rnnedge.vocab import CharVocab

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
    """Read a UTF-8 text file; missing, empty or undecodable files raise DataError."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"text file not found: {p}")
    try:
        text = read_regular(p, MAX_TEXT_BYTES, "text file").decode("utf-8")  # never /dev/zero or a FIFO
    except UnicodeDecodeError as exc:
        raise DataError(f"{p} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror or exc}") from None
    except RnnedgeError as exc:
        raise DataError(str(exc)) from None
    if not text:
        raise DataError(f"{p} is empty")
    return text


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


def data_record(text: str, data: str | os.PathLike[str], path: Path) -> dict[str, Any]:
    """What a checkpoint records about its training text, without machine paths: the file name, its
    sha256 and length, and `dataset` when it was a named download (so a resume can fetch it again)."""
    record: dict[str, Any] = {
        "name": path.name,
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "chars": len(text),
    }
    if str(data) == SHAKESPEARE:
        record["dataset"] = SHAKESPEARE
    return record


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
    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64
    source: str


def prepare(text: str, *, vocab: CharVocab | None = None, seq_len: int, source: str = "<text>") -> TextData:
    """Encode `text` (building a vocabulary unless given) and split it; both splits must fit a window."""
    vocab = vocab or CharVocab.from_text(text)
    ids = torch.from_numpy(vocab.encode(text, on_unknown="error"))  # (N,)
    n_val = int(len(ids) * VAL_FRACTION)
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    need = seq_len + 1
    if len(train) < need or len(val) < need:
        raise ConfigError(
            f"{source} is too short for --seq-len {seq_len}: {len(train)} train and {len(val)} val characters "
            f"(each split needs at least {need}); use a longer text or a shorter --seq-len"
        )
    return TextData(vocab=vocab, train=train, val=val, source=source)


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
        return self.ids[starts[:, None] + self._offsets[None, :]]  # (B, T+1)
