"""ParallelSession: score a whole text with parallel.onnx, chunk by chunk, state carried across chunks.

Memory is bounded by the chunk length, not the text length: a chunk of C tokens needs (C, vocab)
logits and (C, width) activations, whatever the text's size. The graph's scan is exact only up to
its `max_seq_len` metadata, so chunks never exceed it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from rnnedge.errors import InputError
from rnnedge.graphmeta import INPUT_IDS, LOGITS
from rnnedge.runtime._ort import graph_path, load_session
from rnnedge.vocab import CharVocab

DEFAULT_CHUNK = 1024


class ParallelSession:
    """Score token sequences with an rnnedge parallel graph (path: parallel .onnx or an export folder)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        chunk: int | None = None,
        providers: str | list[str] | None = None,
        threads: int | None = None,
        int8: bool = False,
    ) -> None:
        self.path = graph_path(path, "parallel", int8)
        self._sess, self.info = load_session(self.path, "parallel", providers, threads)
        limit = self.info.max_seq_len
        if chunk is None:
            chunk = min(DEFAULT_CHUNK, limit) if limit else DEFAULT_CHUNK
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise InputError(f"chunk must be a positive integer, got {chunk!r}")
        if limit is not None and chunk > limit:
            raise InputError(f"chunk {chunk} exceeds the graph's max_seq_len {limit} (its scan is exact only up to it)")
        self.chunk = chunk
        self._out_names = [LOGITS, *(s.output for s in self.info.states)]

    @property
    def vocab(self) -> CharVocab:
        return self.info.vocab

    def zero_state(self, batch: int = 1) -> list[np.ndarray]:
        return [np.zeros((batch, s.width), dtype=np.float32) for s in self.info.states]

    def run(self, ids: np.ndarray, state: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """One pass over ids (batch, T) with T <= max_seq_len: (logits (batch, T, V), final state)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)  # (B, T)
        if ids.ndim != 2 or ids.shape[1] < 1:
            raise InputError(f"ids must have shape (batch, time), got {ids.shape}")
        if self.info.max_seq_len is not None and ids.shape[1] > self.info.max_seq_len:
            raise InputError(f"{ids.shape[1]} steps exceed the graph's max_seq_len {self.info.max_seq_len}")
        if ids.min() < 0 or ids.max() >= len(self.vocab):
            raise InputError(f"token ids out of range for a vocabulary of {len(self.vocab)}")
        if state is None:
            state = self.zero_state(ids.shape[0])
        feeds: dict[str, Any] = {INPUT_IDS: ids}
        feeds.update({s.input: a for s, a in zip(self.info.states, state, strict=True)})
        logits, *new_state = self._sess.run(self._out_names, feeds)
        return logits, new_state

    def score(self, ids: Any) -> np.ndarray:
        """Per-token negative log-likelihood (nats, float64) of ids[1:] given the tokens before each."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise InputError(f"ids must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
        if arr.size < 2:
            raise InputError("need at least 2 tokens to score (one to condition on, one to predict)")
        vsize = len(self.vocab)
        if arr.min() < 0 or arr.max() >= vsize:
            raise InputError(f"token ids out of range for a vocabulary of {vsize}")
        arr = arr.astype(np.int64)
        inputs, targets = arr[:-1], arr[1:]
        nll = np.empty(targets.size, dtype=np.float64)
        state = self.zero_state(1)
        for start in range(0, inputs.size, self.chunk):
            stop = min(start + self.chunk, inputs.size)
            logits, state = self.run(inputs[None, start:stop], state)  # (1, C, V)
            lg = logits[0].astype(np.float64)  # (C, V)
            top = lg.max(axis=1, keepdims=True)  # (C, 1)
            lse = np.log(np.exp(lg - top).sum(axis=1)) + top[:, 0]  # (C,)
            nll[start:stop] = lse - lg[np.arange(stop - start), targets[start:stop]]
        return nll

    def evaluate_text(self, text: str, on_unknown: str = "error") -> dict[str, float | int]:
        """Mean loss of predicting text[1:] from text[:-1]: {loss_nats, bits_per_char, chars (predicted)}."""
        ids = self.vocab.encode(text, on_unknown=on_unknown)  # type: ignore[arg-type]
        if ids.size < 2:
            raise InputError(f"text too short to evaluate: {ids.size} known character(s), need at least 2")
        nll = self.score(ids)
        if not np.isfinite(nll).all():
            raise InputError("the graph produced non-finite logits on this text")
        loss = float(nll.mean())
        return {"loss_nats": loss, "bits_per_char": loss / math.log(2), "chars": int(nll.size)}
