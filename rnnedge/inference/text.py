"""Reading text for evaluation, calibration and drift: one clear error for missing, unreadable or short files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rnnedge.errors import RnnedgeError
from rnnedge.io import MAX_TEXT_BYTES, read_regular
from rnnedge.vocab import CharVocab, OnUnknown

MIN_CHARS = 32


def read_text(path: str | os.PathLike[str], what: str = "text", min_chars: int = MIN_CHARS) -> str:
    """Read a UTF-8 text file; RnnedgeError if missing, unreadable, a folder, or shorter than `min_chars`."""
    path = Path(path)
    if path.is_dir():
        raise RnnedgeError(f"{what} {path} is a folder, not a text file")
    try:
        text = read_regular(path, MAX_TEXT_BYTES, what).decode("utf-8")  # never /dev/zero or a FIFO
    except FileNotFoundError as exc:
        raise RnnedgeError(f"{what} not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RnnedgeError(f"cannot read {what} {path}: {exc}") from exc
    if len(text) < min_chars:
        raise RnnedgeError(f"{what} {path} is too short ({len(text)} characters; need at least {min_chars})")
    return text


def encode_text(
    text: str, vocab: CharVocab, on_unknown: OnUnknown = "error", what: str = "text", min_chars: int = MIN_CHARS
) -> np.ndarray:
    """Text -> int64 ids; unknown characters raise UnknownCharacterError naming them (or are dropped with 'skip')."""
    try:
        ids = vocab.encode(text, on_unknown=on_unknown)
    except RnnedgeError as exc:
        raise type(exc)(f"{what}: {exc}") from exc
    if len(ids) < min_chars:
        raise RnnedgeError(f"{what} has only {len(ids)} usable characters (need at least {min_chars})")
    return ids
