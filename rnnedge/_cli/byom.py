"""`rnnedge export --from word-lm|mingru-pytorch --weights FILE --out DIR [--tokenizer ...]` (torch inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnedge.errors import ConfigError

SOURCES = ("word-lm", "mingru-pytorch")


def export_from(
    source: str | None,
    weights: Path | None,
    tokenizer: str | None,
    out: Path,
    ckpt: str | None,
    rnn_type: str | None,
    batch_first: bool,
    opset: int,
    max_seq_len: int,
    no_simplify: bool,
    ort_format: bool,
    overwrite: bool = False,
) -> Any:
    """Check the options, load the weights (never a pickle), export through the adapter (`overwrite`:
    the --overwrite every writing command takes)."""
    if source not in SOURCES:
        raise ConfigError(f"--from must be one of {', '.join(SOURCES)}, got {source!r}")
    if ckpt is not None:
        raise ConfigError(f"--from {source} takes its model from --weights, not the checkpoint argument {ckpt!r}")
    if weights is None:
        raise ConfigError(f"--from {source} needs --weights FILE (.safetensors or .pt state_dict)")
    if source != "word-lm" and (rnn_type is not None or batch_first):
        raise ConfigError("--rnn-type and --batch-first are word-lm options")
    from rnnedge.byom.weights import load_weights
    from rnnedge.tokenizer import resolve

    tok = resolve(tokenizer if tokenizer is not None else "bytes")  # checked before the weights are read
    state_dict = load_weights(weights)
    opts: dict[str, Any] = dict(opset=opset, max_seq_len=max_seq_len, simplify=not no_simplify, ort_format=ort_format)
    opts["overwrite"] = overwrite
    opts["source"] = {"weights": str(Path(weights).resolve())}
    if source == "word-lm":
        from rnnedge.byom.word_lm import export_word_lm

        return export_word_lm(state_dict, tokenizer=tok, out=out, rnn_type=rnn_type, batch_first=batch_first, **opts)
    from rnnedge.byom.minlm import export_minlm

    return export_minlm(state_dict, tokenizer=tok, out=out, **opts)
