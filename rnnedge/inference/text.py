"""Reading text for evaluation, calibration and drift: one clear error for missing, unreadable or short files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rnnedge.errors import RnnedgeError
from rnnedge.io import display_name, read_text_file
from rnnedge.vocab import CharVocab, OnUnknown

MIN_CHARS = 32


def read_text(
    path: str | os.PathLike[str], what: str = "text", min_chars: int = MIN_CHARS, max_chars: int | None = None
) -> str:
    """Read a UTF-8 text file (its first `max_chars` characters when given: the rest is not read), line
    endings normalized (rnnedge.io.normalize_newlines, the rule every reader shares); RnnedgeError if
    missing, unreadable, not a regular file, a folder, or shorter than `min_chars`."""
    path = Path(path)
    name = display_name(path)
    if path.is_dir():
        raise RnnedgeError(f"{what} {name} is a folder, not a text file")
    try:
        text = read_text_file(path, what, max_chars=max_chars)  # never /dev/zero or a FIFO
    except FileNotFoundError as exc:
        raise RnnedgeError(f"{what} not found: {name}") from exc
    except OSError as exc:
        raise RnnedgeError(f"cannot read {what} {name}: {exc.strerror or exc}") from exc
    if len(text) < min_chars:
        raise RnnedgeError(f"{what} {name} is too short ({len(text)} characters; need at least {min_chars})")
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
