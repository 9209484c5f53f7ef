"""Which text calibrates and which text measures: never the same characters.

- a recipe that does not calibrate (dynamic, fp16, weight-only) only measures: `--eval`, else the
  whole `--calib` text (nothing is fitted to it);
- a calibrating recipe (static QDQ) with `--calib` and a different `--eval`: each whole;
- with only one of them (or both naming the same text): the first 90% calibrates, the last 10% measures.
No text at all is one clear error. The sources are recorded in the manifest (`calib_source`, `eval_source`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnedge.errors import RnnedgeError
from rnnedge.inference import encode_text, read_text
from rnnedge.inference.text import MIN_CHARS
from rnnedge.io import iter_text
from rnnedge.quantization.recipes import Recipe
from rnnedge.vocab import CharVocab, OnUnknown

EVAL_FRACTION = 0.1
TextPath = str | os.PathLike[str]


@dataclass(frozen=True)
class Texts:
    """Encoded calibration ids (None when the recipe does not calibrate) and held-out ids, with sources."""

    eval_ids: np.ndarray  # (N,)
    eval_source: str
    calib_ids: np.ndarray | None = None  # (M,)
    calib_source: str | None = None


def _encode(path: TextPath, vocab: CharVocab, on_unknown: OnUnknown, what: str) -> np.ndarray:
    return encode_text(read_text(path, what), vocab, on_unknown, f"{what} {path}")


def _same_text(a: TextPath, b: TextPath) -> bool:
    pa, pb = Path(a), Path(b)
    try:
        return pa.samefile(pb) or _digest(pa) == _digest(pb)
    except (OSError, RnnedgeError):
        return False  # read_text reports the missing/unreadable file with its own message


def _digest(path: Path) -> str:
    """sha256 of a text file, read as every text is (bounded, regular files only)."""
    sha = hashlib.sha256()
    for _ in iter_text(path, "text", hasher=sha):
        pass
    return sha.hexdigest()


def _split(ids: np.ndarray, source: str) -> Texts:
    cut = int(len(ids) * (1 - EVAL_FRACTION))
    if len(ids) - cut < MIN_CHARS:
        raise RnnedgeError(
            f"{source} is too short to split into calibration and held-out text "
            f"({len(ids)} characters; need at least {int(MIN_CHARS / EVAL_FRACTION)}), or pass --eval PATH"
        )
    pct = round(100 * (1 - EVAL_FRACTION))
    return Texts(
        calib_ids=ids[:cut],
        calib_source=f"{source}: first {pct}% ({cut} characters)",
        eval_ids=ids[cut:],
        eval_source=f"{source}: last {100 - pct}% ({len(ids) - cut} characters, not used for calibration)",
    )


def read_texts(
    recipe: Recipe,
    vocab: CharVocab,
    calib_text: TextPath | None,
    eval_text: TextPath | None,
    on_unknown: OnUnknown = "error",
) -> Texts:
    """Read, encode and assign the texts for `recipe` (see the module docstring)."""
    calibrates = recipe.needs_calibration
    if eval_text is not None and (calib_text is None or not calibrates):
        held = _encode(eval_text, vocab, on_unknown, "eval text")
        return _split(held, f"eval text {eval_text}") if calibrates else Texts(held, f"eval text {eval_text}")
    if calib_text is None:
        more = "; --calib PATH adds calibration text" if calibrates else ""
        raise RnnedgeError(f"{recipe.name} is judged by its loss on real text: pass --eval PATH (held-out text){more}")
    calib = _encode(calib_text, vocab, on_unknown, "calibration text")
    if not calibrates:
        return Texts(calib, f"calibration text {calib_text} (whole; {recipe.name} does not calibrate)")
    if eval_text is None or _same_text(calib_text, eval_text):
        return _split(calib, f"calibration text {calib_text}")
    held = _encode(eval_text, vocab, on_unknown, "eval text")
    return Texts(held, f"eval text {eval_text} (whole)", calib, f"calibration text {calib_text} (whole)")
