"""Per-timestep drift of one precision variant of a step graph against another (onnxruntime + numpy; no torch).

Three runs over the same text, B streams batched in one session call each step:
  baseline          the reference recurrence (usually "fp32");
  variant           the variant fed its own state (the error that accumulates);
  variant 1-step    the variant fed the baseline's state of the previous step (the error one step makes).
The ratio accumulated / one-step tells whether the recurrence compounds the precision error.
Floating-point states of any shape are compared by relative L2 error per stream; position counters and
other integer states must stay equal and are checked at every step.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rnnedge.drift import metrics
from rnnedge.drift.graphs import FLOAT_DTYPES, GraphPair, open_pair
from rnnedge.drift.result import ComparedGraph, DriftResult, FreeRun
from rnnedge.errors import ConfigError, GraphError, VerificationError
from rnnedge.graphmeta import FP32, StateInfo
from rnnedge.inference import StepRunner, encode_text, nll
from rnnedge.inference.providers import ProviderArg
from rnnedge.vocab import OnUnknown

MIN_STEPS = 16
CHUNK = 256  # logits are buffered for this many steps, then turned into metrics at once
PROMPT_CHARS = 32


WINDOW_CHARS = 4_000_000  # drift reads at most this prefix of --data (more when the streams need it)


def drift_window(steps: int, streams: int) -> int:
    """How many leading characters of the text a drift run reads: its B disjoint streams of steps+1
    characters, and at least WINDOW_CHARS (the streams spread over it, as over any shorter text)."""
    return max(WINDOW_CHARS, streams * (steps + 1))


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


def is_compared(state: StateInfo) -> bool:
    """True for states measured by relative error: floating point, not a position counter."""
    return state.dtype in FLOAT_DTYPES and state.kind != "position"


class _Curves:
    """The (S, T, B) and (T, B) arrays of one run, filled step by step (logit metrics in chunks)."""

    def __init__(self, steps: int, streams: int, n_states: int, vocab: int, targets: np.ndarray, labels: list[str]):
        self.targets = targets  # (T, B) next chars
        self.labels = labels  # what produced each of the three logits, for NaN messages
        self.num, self.num_one, self.den = (np.empty((n_states, steps, streams)) for _ in range(3))  # (S, T, B)
        self.logit_err, self.logit_err_one, self.kl, self.kl_one, self.nll_base, self.nll_var = (
            np.empty((steps, streams)) for _ in range(6)
        )  # (T, B)
        self.top1 = np.empty((steps, streams), bool)  # (T, B)
        self.buffer = np.empty((3, min(CHUNK, steps), streams, vocab), np.float32)  # (3, C, B, V)
        self.start = self.fill = 0

    def add(self, t: int, logits: tuple[np.ndarray, ...], ref: list[np.ndarray], acc: list, one: list) -> None:
        for s, (r, a, o) in enumerate(zip(ref, acc, one, strict=True)):
            self.num[s, t], self.den[s, t] = metrics.squared_norms(a, r)
            self.num_one[s, t], _ = metrics.squared_norms(o, r)
        for k in range(3):
            self.buffer[k, self.fill] = logits[k]  # (B, V)
        self.fill += 1
        if self.fill == len(self.buffer[0]):
            self.flush()

    def flush(self) -> None:
        span = slice(self.start, self.start + self.fill)
        base, var, one = (self.buffer[k, : self.fill] for k in range(3))  # (C, B, V)
        for label, arr in zip(self.labels, (base, var, one), strict=True):
            bad = ~np.isfinite(arr).all(axis=(1, 2))  # (C,)
            if bad.any():
                raise VerificationError(
                    f"{label} produced NaN/inf logits at step {self.start + int(np.argmax(bad)) + 1}"
                )
        self.logit_err[span], self.logit_err_one[span] = (
            metrics.max_abs_error(var, base),
            metrics.max_abs_error(one, base),
        )
        self.kl[span], self.kl_one[span] = metrics.kl_divergence(base, var), metrics.kl_divergence(base, one)
        self.top1[span] = metrics.top1_agreement(base, var)
        self.nll_base[span], self.nll_var[span] = nll(base, self.targets[span]), nll(var, self.targets[span])
        self.start, self.fill = self.start + self.fill, 0

    def state_errors(self) -> tuple[np.ndarray, np.ndarray]:
        den = np.maximum(self.den, 1e-30)
        return np.sqrt(self.num / den), np.sqrt(self.num_one / den)


def _check_exact(states: list[StateInfo], idx: list[int], ref: list, acc: list, one: list, t: int, what: str) -> None:
    for i in idx:
        for run, got in (("", acc[i]), (" (fed the baseline state)", one[i])):
            if not np.array_equal(got, ref[i]):
                s = states[i]
                raise VerificationError(
                    f"{what}{run}: {s.kind} state {s.name} ({s.dtype}) differs from the baseline at step {t + 1}; "
                    "integer and position states must match exactly"
                )


def _greedy(runner: StepRunner, prompt_ids: np.ndarray, gen_steps: int) -> np.ndarray:
    """(gen_steps,) ids generated greedily (batch 1) after feeding the prompt."""
    _, state = runner.run(prompt_ids[None, :])  # every prompt char but the last
    logits, state = runner.step(prompt_ids[-1:], state)  # (1, V)
    out = np.empty(gen_steps, np.int64)
    for i in range(gen_steps):
        out[i] = int(np.argmax(logits[0]))
        logits, state = runner.step(out[i : i + 1], state)
    return out


def _free_run(pair: GraphPair, prompt: str, prompt_ids: np.ndarray, gen_steps: int) -> FreeRun:
    a = _greedy(StepRunner(pair.baseline), prompt_ids, gen_steps)
    b = _greedy(StepRunner(pair.variant), prompt_ids, gen_steps)
    diff = np.flatnonzero(a != b)
    vocab = pair.baseline.info.vocab
    return FreeRun(prompt, gen_steps, int(diff[0]) + 1 if diff.size else None, vocab.decode(a), vocab.decode(b))


def run_drift(
    folder: str | Path,
    text: str,
    *,
    variant: str | None = None,
    baseline: str = FP32,
    steps: int = 4096,
    streams: int = 8,
    prompt: str | None = None,
    on_unknown: OnUnknown = "error",
    gen_steps: int = 1000,
    threads: int = 1,
    name: str | None = None,
    providers: ProviderArg = None,
) -> DriftResult:
    """Run the `baseline` and `variant` step graphs of an export folder side by side over `text`.

    `variant=None`: the folder's only precision variant. `prompt` (default: the first 32 characters of
    `text`) seeds the greedy free-running check of `gen_steps` characters. `providers`: where the
    variant runs (graphs.open_pair; the baseline runs on this CPU). See the module doc.
    """
    started = time.perf_counter()
    if gen_steps < 1:
        raise ConfigError(f"gen_steps must be >= 1, got {gen_steps}")
    pair = open_pair(folder, variant, baseline, threads, providers)
    info, v_info = pair.baseline.info, pair.variant.info
    ids = encode_text(text, info.vocab, on_unknown, what="drift text", min_chars=MIN_STEPS + 1)
    run_steps, offsets, notes = stream_offsets(int(ids.size), steps, streams)
    if on_unknown == "skip" and ids.size < len(text):
        notes.append(f"skipped {len(text) - ids.size} character(s) outside the vocabulary")
    prompt = text[:PROMPT_CHARS] if prompt is None else prompt
    prompt_ids = encode_text(prompt, info.vocab, on_unknown, what="the greedy-check prompt", min_chars=1)
    compared = [i for i, s in enumerate(info.states) if is_compared(s)]
    exact = [i for i, s in enumerate(info.states) if not is_compared(s)]
    if not compared:
        raise GraphError(f"{pair.baseline.source} has no floating-point state to measure drift on")
    pos = np.asarray(offsets, np.int64)[None, :] + np.arange(run_steps + 1, dtype=np.int64)[:, None]  # (T+1, B)
    xs = np.ascontiguousarray(ids[pos[:-1]])  # (T, B) inputs
    labels = [f"the {baseline} graph", f"the {v_info.variant} graph", f"the {v_info.variant} graph (one-step)"]
    curves = _Curves(run_steps, streams, len(compared), len(info.vocab), ids[pos[1:]], labels)
    base, var = StepRunner(pair.baseline), StepRunner(pair.variant)
    variant_dtypes = [np.dtype(s.dtype) for s in v_info.states]  # a precision may narrow a float state
    sb, sv = base.zeros(streams), var.zeros(streams)
    for t in range(run_steps):
        x = xs[t]  # (B,)
        lb, new_b = base.step(x, sb)  # (B, V)
        lv, sv = var.step(x, sv)
        l1, s1 = var.step(x, [s.astype(d, copy=False) for s, d in zip(sb, variant_dtypes, strict=True)])
        _check_exact(list(info.states), exact, new_b, sv, s1, t, f"the {v_info.variant} graph")
        curves.add(t, (lb, lv, l1), [new_b[i] for i in compared], [sv[i] for i in compared], [s1[i] for i in compared])
        sb = new_b
    curves.flush()
    state_err, state_err_one = curves.state_errors()
    return DriftResult(
        name=name or Path(folder).resolve().name,
        folder=str(folder),
        baseline=ComparedGraph.of(pair.baseline),
        variant=ComparedGraph.of(pair.variant),
        arch=info.arch,
        config=dict(info.config),
        states=tuple(info.states[i] for i in compared),
        exact_states=tuple(info.states[i] for i in exact),
        steps=run_steps,
        steps_requested=steps,
        streams=streams,
        offsets=tuple(offsets),
        state_err=state_err,
        state_err_one=state_err_one,
        logit_err=curves.logit_err,
        logit_err_one=curves.logit_err_one,
        kl=curves.kl,
        kl_one=curves.kl_one,
        top1=curves.top1,
        nll_baseline=curves.nll_base,
        nll_variant=curves.nll_var,
        free=_free_run(pair, prompt, prompt_ids, gen_steps),
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )
