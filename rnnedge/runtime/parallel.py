"""ParallelSession: score a whole text with a parallel graph, chunk by chunk, state carried across chunks.

Memory is bounded by the chunk length, not the text length: a chunk of C tokens needs (C, vocab)
logits and (C, width) activations, whatever the text's size. The graph's scan is exact only up to
its `max_seq_len` metadata, so chunks never exceed it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import GraphError, InputError
from rnnedge.graphmeta import FP32
from rnnedge.inference import graph_path, open_graph, parallel_token_nll
from rnnedge.inference.providers import ProviderArg
from rnnedge.runtime.states import state_arrays
from rnnedge.vocab import CharVocab

Progress = Callable[[int, int], None]  # (characters scored so far, of how many)

DEFAULT_CHUNK = 1024


class ParallelSession:
    """Score token sequences with an rnnedge parallel graph.

    `path` is a parallel .onnx file or an export folder (then `variant` picks `parallel.<variant>.onnx`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        chunk: int | None = None,
        providers: ProviderArg = None,
        threads: int | None = None,
        variant: str = FP32,
    ) -> None:
        self.path = graph_path(path, "parallel", variant)
        self.graph = open_graph(self.path, "parallel", providers, threads)
        self.info = self.graph.info
        if not Path(path).is_dir() and variant != FP32 and self.info.variant != variant:
            raise GraphError(f"{self.path} holds variant {self.info.variant!r}, not {variant!r}")
        limit = self.info.max_seq_len
        if chunk is None:
            chunk = min(DEFAULT_CHUNK, limit) if limit else DEFAULT_CHUNK
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise InputError(f"chunk must be a positive integer, got {chunk!r}")
        if limit is not None and chunk > limit:
            raise InputError(f"chunk {chunk} exceeds the graph's max_seq_len {limit} (its scan is exact only up to it)")
        self.chunk = chunk

    @property
    def vocab(self) -> CharVocab:
        return self.info.vocab

    def zero_state(self, batch: int = 1) -> list[np.ndarray]:
        """Every state at zero, (batch, *dims) in its own dtype, in metadata order."""
        return self.graph.zero_states(batch)

    def _check_ids(self, ids: np.ndarray) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.vocab)):
            raise InputError(f"token ids out of range for a vocabulary of {len(self.vocab)}")

    def run(self, ids: Any, state: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """One pass over ids (batch, T) with T <= max_seq_len: (logits (batch, T, V), final state)."""
        arr = np.asarray(ids)
        if arr.ndim != 2 or arr.shape[1] < 1 or arr.dtype.kind not in "iu":
            raise InputError(f"ids must be integers of shape (batch, time), got shape {arr.shape} dtype {arr.dtype}")
        if self.info.max_seq_len is not None and arr.shape[1] > self.info.max_seq_len:
            raise InputError(f"{arr.shape[1]} steps exceed the graph's max_seq_len {self.info.max_seq_len}")
        self._check_ids(arr)
        states = self.zero_state(arr.shape[0]) if state is None else state_arrays(state, self.info, arr.shape[0])
        return self.graph.run(arr, states)

    def score(self, ids: Any, progress: Progress | None = None) -> np.ndarray:
        """Per-token negative log-likelihood (nats, float64) of ids[1:] given the tokens before each;
        `progress(done, total)` after each chunk."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise InputError(f"ids must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
        if arr.size < 2:
            raise InputError("need at least 2 tokens to score (one to condition on, one to predict)")
        self._check_ids(arr)
        return parallel_token_nll(self.graph, arr.astype(np.int64)[None], self.chunk, progress)[0]  # (L-1,)

    def evaluate_text(
        self, text: str, on_unknown: str = "error", progress: Progress | None = None
    ) -> dict[str, float | int]:
        """Mean loss of predicting text[1:] from text[:-1]: {loss_nats, bits_per_char, chars (predicted)}."""
        ids = self.vocab.encode(text, on_unknown=on_unknown)  # type: ignore[arg-type]
        if ids.size < 2:
            raise InputError(f"text too short to evaluate: {ids.size} known character(s), need at least 2")
        token_nll = self.score(ids, progress)
        return loss_summary(float(token_nll.mean()), token_nll.size, self.vocab, ids)


def loss_summary(loss: float, chars: int, vocab: Any = None, ids: np.ndarray | None = None) -> dict[str, Any]:
    """{loss_nats, bits_per_char, chars} from a mean NLL; InputError if the graph gave non-finite logits.

    With the tokenizer and the ids, also the text's own units, so a char model and a subword model compare
    fairly: `tokens` predicted, `nats_per_char` and `bits_per_byte` (total NLL over the characters / UTF-8
    bytes those tokens decode to). For a subword tokenizer `loss_nats` / `bits_per_char` are per token and
    `chars` counts tokens, as before for characters; `nats_per_char` is the per-character figure."""
    if not math.isfinite(loss):
        raise InputError("the graph produced non-finite logits on this text")
    out: dict[str, Any] = {"loss_nats": loss, "bits_per_char": loss / math.log(2), "chars": int(chars)}
    if vocab is not None and ids is not None and ids.size >= 2:
        total = loss * chars
        whole, first = vocab.decode(ids), vocab.decode(ids[:1])
        kind = getattr(vocab, "kind", "char")
        n_chars = max(1, len(whole) - len(first))
        n_bytes = max(1, len(whole.encode("utf-8")) - len(first.encode("utf-8")))
        per_char = loss if kind == "char" else total / n_chars  # characters: one token is one character
        out.update(
            tokenizer=kind,
            tokens=int(chars),
            nats_per_char=per_char,
            bits_per_byte=total / n_bytes / math.log(2),
        )
    return out
