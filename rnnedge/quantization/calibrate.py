"""Calibration data that respects the recurrence.

The step graph is calibrated with the (input_ids, state) feeds it really sees: the fp32 step graph is
run over real text in B streams (different offsets), and the feed of every k-th timestep is kept, so
activations at t = 0 (zero state) and deep into the sequence are both represented. The parallel graph
is calibrated with windows of real text of several lengths, from the zero state and from the state
carried in by the text before the window.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from rnnedge.errors import RnnedgeError
from rnnedge.graphmeta import INPUT_IDS, LOGITS, GraphInfo
from rnnedge.quantization.q_run import session, streams_of, zero_states
from rnnedge.vocab import CharVocab, OnUnknown

Feed = dict[str, np.ndarray]


def read_text(path: str | os.PathLike[str], what: str = "calibration text") -> str:
    """Read a UTF-8 text file; one clear error if missing, unreadable or empty."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RnnedgeError(f"{what} not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RnnedgeError(f"cannot read {what} {path}: {exc}") from exc
    if len(text) < 32:
        raise RnnedgeError(f"{what} {path} is too short ({len(text)} characters; need at least 32)")
    return text


def encode_text(text: str, vocab: CharVocab, on_unknown: OnUnknown = "error", what: str = "text") -> np.ndarray:
    """Text -> ids; unknown characters raise UnknownCharacterError (or are dropped with on_unknown='skip')."""
    try:
        ids = vocab.encode(text, on_unknown=on_unknown)
    except RnnedgeError as exc:
        raise type(exc)(f"{what}: {exc}") from exc
    if len(ids) < 32:
        raise RnnedgeError(f"{what} has only {len(ids)} usable characters (need at least 32)")
    return ids


class FeedReader(CalibrationDataReader):
    """ONNX Runtime CalibrationDataReader over a list of recorded feeds (rewindable)."""

    def __init__(self, feeds: list[Feed]) -> None:
        if not feeds:
            raise RnnedgeError("no calibration feeds (calibration text too short?)")
        self.feeds = feeds
        self._pos = 0

    def get_next(self) -> Feed | None:
        if self._pos >= len(self.feeds):
            return None
        self._pos += 1
        return self.feeds[self._pos - 1]

    def rewind(self) -> None:
        self._pos = 0

    def __len__(self) -> int:
        return len(self.feeds)


def step_feeds(
    model: str | os.PathLike[str],
    info: GraphInfo,
    ids: np.ndarray,
    *,
    streams: int = 8,
    steps: int = 512,
    max_feeds: int = 128,
) -> list[Feed]:
    """Feeds for the step graph: run the fp32 graph `steps` timesteps over `streams` slices of `ids`.

    Every k-th timestep's (input_ids, states) is kept (k = steps // max_feeds), t = 0 included, so the
    calibrated ranges cover the state as it evolves, not only the zero state.
    """
    batch = streams_of(ids, streams)[:, : steps + 1]  # (B, L)
    if batch.shape[1] < 2:
        raise RnnedgeError("calibration text too short for the step graph")
    every = max(1, (batch.shape[1] - 1) // max_feeds)
    sess = session(model)
    states = zero_states(info, batch.shape[0])
    outs = [LOGITS] + [s.output for s in info.states]
    feeds: list[Feed] = []
    for t in range(batch.shape[1] - 1):
        feed = {INPUT_IDS: np.ascontiguousarray(batch[:, t]), **states}
        if t % every == 0:
            feeds.append(feed)
        res = sess.run(outs, feed)
        states = {s.input: v for s, v in zip(info.states, res[1:], strict=True)}
    return feeds


def parallel_feeds(
    model: str | os.PathLike[str],
    info: GraphInfo,
    ids: np.ndarray,
    *,
    lengths: tuple[int, ...] = (16, 64, 256),
    batch: int = 4,
    per_length: int = 4,
) -> list[Feed]:
    """Feeds for the parallel graph: real-text windows of several lengths, from zero and carried states."""
    limit = info.max_seq_len or max(lengths)
    sess = session(model)
    outs = [s.output for s in info.states]
    feeds: list[Feed] = []
    rng = np.random.default_rng(0)
    for length in lengths:
        length = min(length, limit, max(2, len(ids) // (2 * batch)))
        for k in range(per_length):
            starts = rng.integers(0, max(1, len(ids) - 2 * length), size=batch)
            prefix = np.stack([ids[s : s + length] for s in starts])  # (B, T)
            window = np.stack([ids[s + length : s + 2 * length] for s in starts])  # (B, T)
            if k % 2 == 0:  # zero state
                feeds.append({INPUT_IDS: window, **zero_states(info, batch)})
            else:  # the state carried in by the text before the window
                res = sess.run(outs, {INPUT_IDS: prefix, **zero_states(info, batch)})
                feeds.append({INPUT_IDS: window, **{s.input: v for s, v in zip(info.states, res, strict=True)}})
    return feeds
