"""Streaming text generation: feed a prompt through the step graph, then yield sampled characters one by one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from rnnedge.errors import InputError
from rnnedge.graphmeta import FP32
from rnnedge.runtime.sampling import Sampler
from rnnedge.runtime.step import StepSession
from rnnedge.tokenizer import stream_decoder


def generate(
    model: StepSession | str | os.PathLike[str],
    prompt: str,
    tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    on_unknown: str = "error",
    variant: str = FP32,
) -> Iterator[str]:
    """Yield `tokens` characters continuing `prompt`, each as soon as it is sampled.

    `model` is a StepSession (batch 1; its state is reset first) or a step .onnx / export folder
    (`variant` then picks `step.<variant>.onnx`).
    A prompt with characters outside the vocabulary raises UnknownCharacterError naming them
    (on_unknown='skip' drops them); an empty prompt raises InputError. Parameters are checked
    before the first character is produced.
    """
    sampler = Sampler(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 0:
        raise InputError(f"tokens must be a non-negative integer, got {tokens!r}")
    if not prompt:
        raise InputError("the prompt is empty: give at least one character to start from (e.g. a newline)")
    session = model if isinstance(model, StepSession) else StepSession(model, variant=variant)
    if session.batch != 1:
        raise InputError(f"generate() streams one text: use a StepSession with batch 1, not {session.batch}")
    ids = session.vocab.encode(prompt, on_unknown=on_unknown)  # type: ignore[arg-type]
    if ids.size == 0:
        raise InputError("every character of the prompt is outside the vocabulary; nothing left to start from")
    return _stream(session, ids, int(tokens), sampler)


def _stream(session: StepSession, ids: np.ndarray, tokens: int, sampler: Sampler) -> Iterator[str]:
    """Each sampled token's text (characters: one character; bytes / subwords: what the token adds to the
    text, empty while a multi-byte character is still incomplete)."""
    decode = stream_decoder(session.vocab)
    session.reset()
    logits = session.feed_sequence(ids)
    for _ in range(tokens):
        nxt = sampler(logits)  # (1,)
        yield decode(int(nxt[0]))
        logits = session.feed(int(nxt[0]), copy=False)
