"""StepSession: one token per stream per call through a step graph, state carried between calls.

Buffers are allocated once: token ids, logits and two sets of state arrays, each state with its
own full shape and dtype from the graph's metadata (a (B, H) float32 recurrent state, a
(B, heads, context, head_dim) KV cache, an int64 (B,) position counter, ...). Two ONNX Runtime
IOBindings point at them, set A -> set B and set B -> set A, so each step reads the state the
previous step wrote and writes into the other set (double buffering): no feed dict, no output
allocation, no copy of the state. On a CUDA (or TensorRT) session the same buffers live in device
memory instead (runtime/cuda.py's DeviceStep), so the state never leaves the GPU between tokens.

The `batch` rows are stream slots. `add_stream()` hands out a free slot (its state zeroed) and
`drop_stream(slot)` frees one; `feed({slot: token_id, ...})` advances only those slots: every other
row is fed PAD_ID and, after the call, its state rows are carried over from the set the call read
(bit for bit), so a stream that sits out a step, or its neighbours coming and going, leave its state
as it was. Nothing is reallocated or rebound: the ids, logits and state buffers stay where they are.
(Partial feeds run on host buffers; a GPU session advances all its slots together.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rnnedge.errors import GraphError, InputError
from rnnedge.graphmeta import FP32, INPUT_IDS, LOGITS
from rnnedge.inference import bind_arrays, graph_path, open_graph, output_dtype
from rnnedge.inference.providers import ProviderArg
from rnnedge.runtime.cuda import device_step
from rnnedge.runtime.states import state_arrays
from rnnedge.vocab import CharVocab

if TYPE_CHECKING:
    import onnxruntime as ort

PAD_ID = 0  # the token a slot not named in feed({slot: id}) runs; its logits and state are discarded


class StepSession:
    """Stream tokens through an rnnedge step graph (fp32 or any precision variant).

    `path` is a step .onnx file or an export folder (then `variant` picks `step.<variant>.onnx`;
    "fp32" is `step.onnx`). `batch` independent streams advance together: `feed(ids)` takes one id
    per stream. `providers`: None/'cpu', 'cuda', 'tensorrt', a list of ORT provider names, or a
    ProviderChoice (TF32, CUDA graphs); on CUDA the state stays on the GPU. `threads`: intra-op
    threads; `session_config`: extra ORT session config entries.
    `streams`: how many of the `batch` slots hold a stream at the start (slots 0..streams-1; None:
    all); `add_stream`/`drop_stream`/`feed({slot: id})` serve streams that come and go.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: ProviderArg = None,
        threads: int | None = None,
        batch: int = 1,
        variant: str = FP32,
        session_config: dict[str, str] | None = None,
        streams: int | None = None,
    ) -> None:
        if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
            raise InputError(f"batch must be a positive integer, got {batch!r}")
        if streams is not None and (not _is_int(streams) or not 0 <= streams <= batch):
            raise InputError(f"streams must be an integer in 0..batch ({batch}), got {streams!r}")
        self.path = graph_path(path, "step", variant)
        self.graph = open_graph(self.path, "step", providers, threads, session_config)
        self.info = self.graph.info
        if not Path(path).is_dir() and variant != FP32 and self.info.variant != variant:
            raise GraphError(f"{self.path} holds variant {self.info.variant!r}, not {variant!r}")
        self.batch = int(batch)
        self._vsize = len(self.info.vocab)
        self._ids = np.zeros(self.batch, dtype=np.int64)  # (B,)
        logits_dtype = output_dtype(self.graph.session, LOGITS)
        self._logits = np.zeros((self.batch, self._vsize), dtype=logits_dtype)  # (B, V)
        self._bufs = [  # 2 sets x S states, each (B, *dims) in its own dtype
            [np.zeros(s.concrete_shape(self.batch), dtype=np.dtype(s.dtype)) for s in self.info.states]
            for _ in range(2)
        ]
        self._bindings = [self._bind(i) for i in range(2)]
        self._device = device_step(self.graph, self.batch)  # state in GPU memory, or None (host buffers)
        self._cur = 0  # index of the buffer set holding the current state
        self.steps = 0
        self._active = np.zeros(self.batch, dtype=bool)  # (B,) slots holding a stream
        self._active[: self.batch if streams is None else streams] = True
        self._keep = np.zeros(self.batch, dtype=bool)  # (B,) slots a partial feed carries over
        # (B, 1, ...) views of _keep that broadcast over each state's dims, and over the logits' vocab.
        self._keep_states = [self._keep.reshape((self.batch,) + (1,) * (len(s.shape) - 1)) for s in self.info.states]
        self._keep_logits = self._keep.reshape(self.batch, 1)

    def _bind(self, src: int) -> ort.IOBinding:
        states = self.info.states
        inputs = {INPUT_IDS: self._ids, **{s.input: a for s, a in zip(states, self._bufs[src], strict=True)}}
        outputs = {LOGITS: self._logits, **{s.output: a for s, a in zip(states, self._bufs[1 - src], strict=True)}}
        return bind_arrays(self.graph.session, inputs, outputs)

    @property
    def vocab(self) -> CharVocab:
        return self.info.vocab

    @property
    def variant(self) -> str:
        return self.info.variant

    @property
    def state_names(self) -> list[str]:
        return [s.name for s in self.info.states]

    @property
    def state_bytes_per_stream(self) -> int:
        """Bytes of state one stream carries between tokens (all states, their own dtypes)."""
        return self.info.state_bytes_per_stream()

    @property
    def active_streams(self) -> tuple[int, ...]:
        """The slots that hold a stream, ascending."""
        return tuple(np.flatnonzero(self._active).tolist())

    def add_stream(self) -> int:
        """Open a stream in the lowest free slot (its state zeroed) and return the slot."""
        free = np.flatnonzero(~self._active)
        if not free.size:
            raise InputError(
                f"all {self.batch} stream slots are in use; drop_stream(slot) first or open the session "
                "with a larger batch"
            )
        slot = int(free[0])
        self._zero_slot(slot)
        self._active[slot] = True
        return slot

    def drop_stream(self, slot: int) -> None:
        """Close the stream in `slot`: its state is zeroed and the slot is free for add_stream."""
        self._zero_slot(self._active_slot(slot))
        self._active[slot] = False

    def _active_slot(self, slot: Any) -> int:
        if not _is_int(slot) or not 0 <= slot < self.batch:
            raise InputError(f"stream slot {slot!r} out of range for batch {self.batch}")
        if not self._active[slot]:
            raise InputError(f"stream slot {slot} holds no stream (active: {list(self.active_streams)})")
        return int(slot)

    def _zero_slot(self, slot: int) -> None:
        for a in self._bufs[self._cur]:  # (B, *dims)
            a[slot] = 0

    def feed(self, token_ids: Any, copy: bool = True) -> np.ndarray:
        """Advance streams by one token; returns logits (batch, vocab), row = slot.

        `token_ids`: one int per slot (an int is accepted when batch == 1), advancing every slot; or
        a mapping {slot: token id} advancing only those (active) slots: every other slot's state is
        left bit-identical and its logits row is NaN. With copy=False the returned array is the
        session's own buffer, overwritten by the next feed.
        """
        if isinstance(token_ids, Mapping):
            return self._feed_slots(token_ids, copy)
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
        bad = (ids < 0) | (ids >= self._vsize)
        if bad.any():
            raise InputError(
                f"token id(s) {sorted(set(ids[bad].tolist()))[:5]} out of range for a vocabulary of "
                f"{self._vsize} (valid: 0..{self._vsize - 1})"
            )
        self._ids[:] = ids
        return self._run(copy)

    def _feed_slots(self, tokens: Mapping[Any, Any], copy: bool) -> np.ndarray:
        if not tokens:
            raise InputError("feed({slot: token_id}) needs at least one stream")
        if self._device is not None:
            raise InputError("feed({slot: token_id}) runs on host buffers; on a GPU session feed every slot")
        self._ids.fill(PAD_ID)
        self._keep.fill(True)
        for slot, token in tokens.items():
            slot = self._active_slot(slot)
            if not _is_int(token) or not 0 <= token < self._vsize:
                raise InputError(f"token id {token!r} for slot {slot} out of range for a vocabulary of {self._vsize}")
            self._ids[slot] = token
            self._keep[slot] = False
        read = self._bufs[self._cur]
        self._run(copy=False)
        if self._keep.any():  # carry the state of every slot not fed over from the set this step read
            for keep, old, new in zip(self._keep_states, read, self._bufs[self._cur], strict=True):
                np.copyto(new, old, where=keep)
            np.copyto(self._logits, np.nan, where=self._keep_logits)
        return self._logits.copy() if copy else self._logits

    def _run(self, copy: bool) -> np.ndarray:
        self._advance()
        if self._device is not None:
            return self._device.logits()  # (B, V), copied from the device
        return self._logits.copy() if copy else self._logits

    def _advance(self) -> None:
        """One step for the ids in self._ids; the logits are not fetched from a device."""
        if self._device is not None:
            self._device.run(self._ids)
        else:
            self.graph.session.run_with_iobinding(self._bindings[self._cur])
        self._cur = 1 - self._cur
        self.steps += 1

    def feed_text(self, text: str, on_unknown: str = "error") -> np.ndarray:
        """Feed each character of `text` to every stream; returns the logits after the last one."""
        return self.feed_sequence(self.vocab.encode(text, on_unknown=on_unknown))  # type: ignore[arg-type]

    def feed_sequence(self, ids: Any) -> np.ndarray:
        """Feed the token ids one after another to every stream; returns the logits after the last one."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
            raise InputError(f"need a non-empty 1-D integer sequence, got shape {arr.shape} dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= self._vsize)
        if bad.any():  # checked before any token is fed
            raise InputError(
                f"token id(s) {sorted(set(arr[bad].tolist()))[:5]} out of range for a vocabulary of {self._vsize}"
            )
        for i in arr.tolist():
            self._ids[:] = i
            self._advance()
        return self._device.logits() if self._device is not None else self._logits.copy()

    def reset(self, stream: int | None = None) -> None:
        """Zero the state of every stream, or of stream `stream` only (the others keep theirs)."""
        if stream is not None and (not _is_int(stream) or not 0 <= stream < self.batch):
            raise InputError(f"stream {stream!r} out of range for batch {self.batch}")
        if self._device is not None:
            self._device.zero(None if stream is None else int(stream))
        for a in self._bufs[self._cur]:  # (B, *dims)
            if stream is None:
                a.fill(0)
            else:
                a[stream] = 0
        if stream is None:
            self.steps = 0

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the current state: {state name: (batch, *dims) array in the state's dtype}."""
        current = self._device.states() if self._device is not None else self._bufs[self._cur]
        return {s.name: a.copy() for s, a in zip(self.info.states, current, strict=True)}

    @state.setter
    def state(self, value: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> None:
        arrays = state_arrays(value, self.info, self.batch)  # all checked before any is written
        if self._device is not None:
            self._device.set_states(arrays)
        for dst, src in zip(self._bufs[self._cur], arrays, strict=True):
            dst[...] = src

    def describe(self) -> dict[str, Any]:
        """What this session runs: graph, variant, sizes, every state's full shape and bytes, providers."""
        return {
            "path": str(self.path),
            "arch": self.info.arch,
            "variant": self.info.variant,
            "recipe": self.info.recipe,
            "vocab_size": self._vsize,
            "batch": self.batch,
            "active_streams": list(self.active_streams),
            "states": {
                s.name: {
                    "shape": list(s.concrete_shape(self.batch)),
                    "dtype": s.dtype,
                    "kind": s.kind,
                    "bytes_per_stream": s.nbytes_per_stream(),
                }
                for s in self.info.states
            },
            "state_bytes_per_stream": self.state_bytes_per_stream,
            "providers": self.graph.session.get_providers(),
            "state_on": "host" if self._device is None else self._device.device,
            "cuda_graph": self.graph.cuda_graph,
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
