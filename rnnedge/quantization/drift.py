"""Per-timestep drift of an int8 step graph against its fp32 original (onnxruntime + numpy; no torch).

Three runs over the same text, B streams batched in one session call each step:
  fp32         the reference recurrence;
  int8         the int8 graph fed its own state (the error that accumulates);
  int8 1-step  the int8 graph fed the fp32 state of the previous step (the error one step makes).
The ratio accumulated / one-step tells whether the recurrence compounds the quantization error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import ConfigError, VerificationError
from rnnedge.graphmeta import INPUT_IDS, LOGITS
from rnnedge.quantization import d_metrics as M
from rnnedge.quantization.d_graphs import StepGraph, open_pair
from rnnedge.vocab import OnUnknown

MIN_STEPS = 16


@dataclass(frozen=True)
class FreeRun:
    """Greedy generation from the same prompt with both graphs."""

    prompt: str
    steps: int
    diverged_at: int | None  # 1-based index of the first generated char that differs; None: never
    fp32_text: str
    int8_text: str


@dataclass(frozen=True, eq=False)
class DriftResult:
    """Everything one drift run measured; curves are (T, B) per step and stream, states (S, T, B)."""

    name: str
    folder: str
    fp32_path: str
    int8_path: str
    arch: str
    config: dict[str, Any]
    quantization: dict[str, Any] | None
    state_names: tuple[str, ...]
    steps: int
    streams: int
    offsets: tuple[int, ...]
    state_err: np.ndarray  # (S, T, B) accumulated relative L2 error per state tensor
    state_err_one: np.ndarray  # (S, T, B) one-step relative L2 error
    logit_err: np.ndarray  # (T, B) max |logit int8 − logit fp32|
    logit_err_one: np.ndarray  # (T, B)
    kl: np.ndarray  # (T, B) KL(fp32‖int8) nats
    kl_one: np.ndarray  # (T, B)
    top1: np.ndarray  # (T, B) bool
    nll_fp32: np.ndarray  # (T, B) nats of the actual next char
    nll_int8: np.ndarray  # (T, B)
    free: FreeRun
    seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def loss_fp32(self) -> float:
        return float(self.nll_fp32.mean())

    @property
    def loss_int8(self) -> float:
        return float(self.nll_int8.mean())

    @property
    def worst_index(self) -> int:
        """The state tensor with the largest accumulated error over the last 10% of t (stream mean)."""
        tail = self.state_err[:, int(self.steps * 0.9) :].mean(axis=(1, 2))  # (S,)
        return int(np.argmax(tail))

    @property
    def worst_state(self) -> np.ndarray:
        """(T,) stream-mean accumulated error of the worst state tensor (see worst_index)."""
        return self.state_err[self.worst_index].mean(axis=1)

    @property
    def worst_state_one(self) -> np.ndarray:
        """(T,) stream-mean one-step error of the same state tensor."""
        return self.state_err_one[self.worst_index].mean(axis=1)


def stream_offsets(n_ids: int, steps: int, streams: int) -> tuple[int, list[int], list[str]]:
    """(steps, offsets, notes): B start positions with steps+1 chars each; shrinks steps if the text is short."""
    if streams < 1:
        raise ConfigError(f"streams must be >= 1, got {streams}")
    if steps < MIN_STEPS:
        raise ConfigError(f"steps must be >= {MIN_STEPS}, got {steps}")
    notes: list[str] = []
    if n_ids < MIN_STEPS + 1:
        raise ConfigError(f"text has {n_ids} characters; a drift run needs at least {MIN_STEPS + 1}")
    if n_ids < steps + 1:
        notes.append(f"text has {n_ids} characters: steps shrunk from {steps} to {n_ids - 1}")
        steps = n_ids - 1
    need = steps + 1
    if n_ids >= streams * need:
        stride = n_ids // streams
        return steps, [b * stride for b in range(streams)], notes
    offsets = [round(x) for x in np.linspace(0, n_ids - need, streams)]
    notes.append(f"text too short for {streams} disjoint streams of {need} characters: streams overlap")
    return steps, offsets, notes


class _Runner:
    """One step graph driven with preallocated feeds."""

    def __init__(self, graph: StepGraph) -> None:
        self.session = graph.session
        self.inputs = [s.input for s in graph.info.states]
        self.outputs = [LOGITS] + [s.output for s in graph.info.states]

    def zeros(self, batch: int, graph: StepGraph) -> list[np.ndarray]:
        return [np.zeros((batch, s.width), dtype=np.float32) for s in graph.info.states]

    def step(self, ids: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feed = dict(zip(self.inputs, state, strict=True))
        feed[INPUT_IDS] = ids
        out = self.session.run(self.outputs, feed)
        return out[0], out[1:]


def _free_run(fp: StepGraph, q: StepGraph, prompt_ids: np.ndarray, gen_steps: int, prompt: str) -> FreeRun:
    runners = [_Runner(fp), _Runner(q)]
    texts: list[list[int]] = [[], []]
    for k, (r, g) in enumerate(zip(runners, (fp, q), strict=True)):
        state = r.zeros(1, g)
        logits = np.zeros((1, len(g.info.vocab)), np.float32)
        for i in prompt_ids.tolist():
            logits, state = r.step(np.array([i], np.int64), state)
        for _ in range(gen_steps):
            nxt = int(np.argmax(logits[0]))
            texts[k].append(nxt)
            logits, state = r.step(np.array([nxt], np.int64), state)
    a, b = np.array(texts[0]), np.array(texts[1])
    diff = np.flatnonzero(a != b)
    vocab = fp.info.vocab
    return FreeRun(prompt, gen_steps, int(diff[0]) + 1 if diff.size else None, vocab.decode(a), vocab.decode(b))


def run_drift(
    folder: str | Path,
    text: str,
    *,
    steps: int = 4096,
    streams: int = 8,
    prompt: str | None = None,
    int8_path: str | Path | None = None,
    on_unknown: OnUnknown = "error",
    gen_steps: int = 1000,
    threads: int = 1,
    name: str | None = None,
) -> DriftResult:
    """Run fp32 and int8 step graphs of an export folder side by side over `text` (see module doc).

    `prompt` (default: the first 32 characters of `text`) seeds the greedy free-running check.
    """
    started = time.perf_counter()
    folder = Path(folder)
    fp, q = open_pair(folder, Path(int8_path) if int8_path is not None else None, threads)
    vocab = fp.info.vocab
    ids = vocab.encode(text, on_unknown=on_unknown)
    steps, offsets, notes = stream_offsets(int(ids.size), steps, streams)
    if on_unknown == "skip" and ids.size < len(text):
        notes.append(f"skipped {len(text) - ids.size} character(s) outside the vocabulary")
    pos = np.asarray(offsets, np.int64)[None, :] + np.arange(steps + 1, dtype=np.int64)[:, None]  # (T+1, B)
    xs = np.ascontiguousarray(ids[pos[:-1]])  # (T, B) inputs
    ys = ids[pos[1:]]  # (T, B) next chars
    n_states, n_vocab = len(fp.info.states), len(vocab)
    lf, lq, l1 = (np.empty((steps, streams, n_vocab), np.float32) for _ in range(3))  # (T, B, V)
    num, num1, den = (np.empty((n_states, steps, streams), np.float64) for _ in range(3))  # (S, T, B)
    rf, rq = _Runner(fp), _Runner(q)
    sf, sq = rf.zeros(streams, fp), rq.zeros(streams, q)
    for t in range(steps):
        x = xs[t]
        lf[t], new_f = rf.step(x, sf)
        lq[t], sq = rq.step(x, sq)
        l1[t], s1 = rq.step(x, sf)  # int8 fed the fp32 state: one-step error
        for s in range(n_states):
            ref = new_f[s]  # (B, H)
            d, d1 = sq[s] - ref, s1[s] - ref  # (B, H)
            num[s, t] = np.einsum("bh,bh->b", d, d)
            num1[s, t] = np.einsum("bh,bh->b", d1, d1)
            den[s, t] = np.einsum("bh,bh->b", ref, ref)
        sf = new_f
    for label, arr in (("fp32", lf), ("int8", lq), ("int8 (fed the fp32 state)", l1)):
        bad = ~np.isfinite(arr).all(axis=(1, 2))
        if bad.any():
            raise VerificationError(f"{label} graph produced NaN/inf logits at step {int(np.argmax(bad)) + 1}")
    den = np.maximum(den, 1e-30)
    prompt = text[:32] if prompt is None else prompt
    prompt_ids = vocab.encode(prompt, on_unknown=on_unknown)
    if prompt_ids.size == 0:
        raise ConfigError("the free-running prompt is empty")
    free = _free_run(fp, q, prompt_ids, gen_steps, prompt)
    return DriftResult(
        name=name or folder.resolve().name,
        folder=str(folder),
        fp32_path=str(fp.path),
        int8_path=str(q.path),
        arch=fp.info.arch,
        config=dict(fp.info.config),
        quantization=q.info.quantization,
        state_names=tuple(s.name for s in fp.info.states),
        steps=steps,
        streams=streams,
        offsets=tuple(offsets),
        state_err=np.sqrt(num / den),
        state_err_one=np.sqrt(num1 / den),
        logit_err=M.max_abs_error(lq, lf),
        logit_err_one=M.max_abs_error(l1, lf),
        kl=M.kl_divergence(lf, lq),
        kl_one=M.kl_divergence(lf, l1),
        top1=M.top1_agreement(lf, lq),
        nll_fp32=M.nll(lf, ys),
        nll_int8=M.nll(lq, ys),
        free=free,
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )
