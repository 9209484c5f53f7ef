"""The pipeline's texts: held-out text for every check, calibration text that never overlaps it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rnnedge.io import display_name
from rnnedge.vocab import CharVocab

HELDOUT_FRACTION = 0.1  # `rnnedge train` holds out the last 10%: the same part is the pipeline's held-out text
SELF_SAMPLED_CHARS = 20_000


@dataclass(frozen=True)
class PipelineTexts:
    """Held-out text (what every loss and the drift run use) and the calibration text before it."""

    heldout: str
    calibration: str
    source: str  # where the text came from, for the summary and the report


def split_text(text: str, source: str) -> PipelineTexts:
    """First 90% calibrates, last 10% is held out (disjoint by construction)."""
    cut = int(len(text) * (1 - HELDOUT_FRACTION))
    return PipelineTexts(heldout=text[cut:], calibration=text[:cut], source=source)


def real_text(data: str | None, log: Callable[[str], None]) -> tuple[str, str] | None:
    """(text, source) from --data, else tiny-shakespeare (cached or downloaded once); None when offline."""
    from rnnedge.training.data import DataError, read_text, resolve_data, shakespeare_path

    if data is not None:
        return read_text(resolve_data(data)), display_name(data)
    try:
        path = shakespeare_path(download=True, timeout=10.0)
    except DataError as exc:
        log(f"      {exc}")
        return None
    return read_text(path), "tiny-shakespeare (downloaded once, cached)"


def check_vocabulary(text: str, vocab: CharVocab, source: str) -> None:
    """UnknownCharacterError naming the characters the model cannot read, before any stage runs."""
    from rnnedge.inference import encode_text

    encode_text(text, vocab, "error", f"text {source}", min_chars=1)


def sampled_text(export_dir: Path, seed: int) -> PipelineTexts:
    """Offline fallback: text sampled from the fp32 step graph itself (temperature 1), split 90/10.
    It measures the variant against fp32 on the model's own distribution; the summary says so."""
    from rnnedge.runtime import generate

    text = "\n" + "".join(generate(export_dir, "\n", 2 * SELF_SAMPLED_CHARS - 1, temperature=1.0, seed=seed))
    return PipelineTexts(
        heldout=text[SELF_SAMPLED_CHARS:],
        calibration=text[:SELF_SAMPLED_CHARS],
        source="sampled from the fp32 model (offline fallback; pass --data for real held-out text)",
    )
