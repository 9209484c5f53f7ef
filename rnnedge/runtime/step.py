"""StepSession: one token per stream per call through step.onnx, state carried between calls.

Buffers are allocated once: token ids, logits and two sets of state arrays. Two ONNX Runtime
IOBindings point at them, set A -> set B and set B -> set A, so each step reads the state the
previous step wrote and writes into the other set (double buffering): no feed dict, no output
allocation, no copy of the state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.errors import InputError
from rnnedge.graphmeta import INPUT_IDS, LOGITS, GraphInfo
from rnnedge.runtime._ort import graph_path, load_session
from rnnedge.vocab import CharVocab


class StepSession:
    """Stream tokens through an rnnedge step graph (fp32 or int8).

    `path` is a step .onnx file or an export folder (then `int8` picks step.int8.onnx).
    `batch` independent streams advance together: `feed(ids)` takes one id per stream.
    `providers`: None/'cpu', 'cuda', 'tensorrt' or a list of ORT provider names; `threads`: intra-op
    threads; `session_config`: extra ORT session config entries.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: str | list[str] | None = None,
        threads: int | None = None,
        batch: int = 1,
        int8: bool = False,
        session_config: dict[str, str] | None = None,
    ) -> None:
        if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
            raise InputError(f"batch must be a positive integer, got {batch!r}")
        self.path = graph_path(path, "step", int8)
        self._sess, self.info = load_session(self.path, "step", providers, threads, session_config)
        self.batch = int(batch)
        self._vsize = len(self.info.vocab)
        self._ids = np.zeros(self.batch, dtype=np.int64)  # (B,)
        self._logits = np.zeros((self.batch, len(self.info.vocab)), dtype=np.float32)  # (B, V)
        shapes = [(self.batch, s.width) for s in self.info.states]
        self._bufs = [[np.zeros(sh, dtype=np.float32) for sh in shapes] for _ in range(2)]  # 2 x S x (B, H)
        self._bindings = [self._bind(i) for i in range(2)]
        self._cur = 0  # index of the buffer set holding the current state
        self.steps = 0

    def _bind(self, src: int) -> ort.IOBinding:
        b = self._sess.io_binding()
        b.bind_ortvalue_input(INPUT_IDS, ort.OrtValue.ortvalue_from_numpy(self._ids))
        b.bind_ortvalue_output(LOGITS, ort.OrtValue.ortvalue_from_numpy(self._logits))
        for s, a_in, a_out in zip(self.info.states, self._bufs[src], self._bufs[1 - src], strict=True):
            b.bind_ortvalue_input(s.input, ort.OrtValue.ortvalue_from_numpy(a_in))
            b.bind_ortvalue_output(s.output, ort.OrtValue.ortvalue_from_numpy(a_out))
        return b

    @property
    def vocab(self) -> CharVocab:
        return self.info.vocab

    @property
    def state_names(self) -> list[str]:
        return [s.name for s in self.info.states]

    def feed(self, token_ids: Any, copy: bool = True) -> np.ndarray:
        """Advance every stream by one token; returns logits (batch, vocab) float32.

        `token_ids`: one int per stream (an int is accepted when batch == 1). With copy=False the
        returned array is the session's own buffer, overwritten by the next feed.
        """
        if self.batch == 1 and isinstance(token_ids, (int, np.integer)) and not isinstance(token_ids, bool):
            if not 0 <= token_ids < self._vsize:  # fast path for the common single-stream case
                raise InputError(f"token id(s) [{token_ids}] out of range for a vocabulary of {self._vsize}")
            self._ids[0] = token_ids
            return self._run(copy)
        ids = np.asarray(token_ids)
        if ids.shape != (self.batch,):
            if ids.ndim == 0 and self.batch == 1:
                ids = ids.reshape(1)
            else:
                raise InputError(f"token_ids must have shape ({self.batch},) (one per stream), got {ids.shape}")
        if ids.dtype.kind not in "iu":
            raise InputError(f"token_ids must be integers, got dtype {ids.dtype}")
        bad = (ids < 0) | (ids >= len(self.info.vocab))
        if bad.any():
            raise InputError(
                f"token id(s) {sorted(set(ids[bad].tolist()))[:5]} out of range for a vocabulary of "
                f"{len(self.info.vocab)} (valid: 0..{len(self.info.vocab) - 1})"
            )
        self._ids[:] = ids
        return self._run(copy)

    def _run(self, copy: bool) -> np.ndarray:
        self._sess.run_with_iobinding(self._bindings[self._cur])
        self._cur = 1 - self._cur
        self.steps += 1
        return self._logits.copy() if copy else self._logits

    def feed_text(self, text: str, on_unknown: str = "error") -> np.ndarray:
        """Feed each character of `text` to every stream; returns the logits after the last one."""
        return self.feed_sequence(self.vocab.encode(text, on_unknown=on_unknown))  # type: ignore[arg-type]

    def feed_sequence(self, ids: Any) -> np.ndarray:
        """Feed the token ids one after another to every stream; returns the logits after the last one."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
            raise InputError(f"need a non-empty 1-D integer sequence, got shape {arr.shape} dtype {arr.dtype}")
        for i in arr.tolist():
            self.feed(np.full(self.batch, i, dtype=np.int64), copy=False)
        return self._logits.copy()

    def reset(self, stream: int | None = None) -> None:
        """Zero the state of every stream, or of stream `stream` only."""
        if stream is not None and not 0 <= stream < self.batch:
            raise InputError(f"stream {stream} out of range for batch {self.batch}")
        for a in self._bufs[self._cur]:
            if stream is None:
                a.fill(0.0)
            else:
                a[stream] = 0.0
        if stream is None:
            self.steps = 0

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the current state: {state name: (batch, width) float32}."""
        return {s.name: a.copy() for s, a in zip(self.info.states, self._bufs[self._cur], strict=True)}

    @state.setter
    def state(self, value: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> None:
        arrays = _state_arrays(value, self.info, self.batch)
        for dst, src in zip(self._bufs[self._cur], arrays, strict=True):
            dst[...] = src

    def describe(self) -> dict[str, Any]:
        """What this session runs: graph, arch, sizes, providers."""
        return {
            "path": str(self.path),
            "arch": self.info.arch,
            "vocab_size": len(self.info.vocab),
            "states": {s.name: s.width for s in self.info.states},
            "batch": self.batch,
            "int8": self.info.quantization is not None,
            "providers": self._sess.get_providers(),
        }


def _state_arrays(value: Any, info: GraphInfo, batch: int) -> list[np.ndarray]:
    names = [s.name for s in info.states]
    if isinstance(value, Mapping):
        missing = [n for n in names if n not in value]
        extra = [k for k in value if k not in names]
        if missing or extra:
            raise InputError(f"state must have exactly {names}; missing {missing}, unexpected {extra}")
        items = [value[n] for n in names]
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != len(names):
            raise InputError(f"state must hold {len(names)} arrays ({names}), got {len(value)}")
        items = list(value)
    else:
        raise InputError(f"state must be a dict or list of arrays, got {type(value).__name__}")
    out = []
    for s, item in zip(info.states, items, strict=True):
        arr = item if isinstance(item, np.ndarray) else np.asarray(item)
        if arr.dtype != np.float32:
            raise InputError(f"state {s.name!r} must be float32, got {arr.dtype}")
        if arr.shape != (batch, s.width):
            raise InputError(f"state {s.name!r} must have shape ({batch}, {s.width}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError(f"state {s.name!r} holds NaN or infinite values")
        out.append(arr)
    return out
