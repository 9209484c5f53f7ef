"""Calibration data that respects the recurrence.

The step graph is calibrated with the (input_ids, state) feeds it really sees: the fp32 step graph is
run over real text in B streams (different offsets) by `inference.StepRunner`, and a hook keeps the
feed of every k-th timestep, so activations at t = 0 (zero state) and deep into the sequence are both
represented. The parallel graph is calibrated with windows of real text of several lengths, from the
zero state and from the state carried in by the text before the window.
"""

from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from rnnedge.errors import RnnedgeError
from rnnedge.graphmeta import INPUT_IDS
from rnnedge.inference import GraphSession, StepRunner, streams_of
from rnnedge.quantization.recipes import Recipe

Feed = dict[str, np.ndarray]
STREAMS = 8
MAX_STEP_FEEDS = 128


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


def _feed(graph: GraphSession, ids: np.ndarray, states: list[np.ndarray]) -> Feed:
    ids = np.ascontiguousarray(ids, dtype=graph.ids_dtype)  # int64, or int32 (`export --ids int32`, mobile/)
    return {INPUT_IDS: ids, **dict(zip(graph.state_inputs, states, strict=True))}


def step_feeds(
    graph: GraphSession,
    ids: np.ndarray,
    *,
    streams: int = STREAMS,
    steps: int = 512,
    max_feeds: int = MAX_STEP_FEEDS,
) -> list[Feed]:
    """Feeds for the step graph: run the fp32 graph `steps` timesteps over `streams` slices of `ids` (N,).

    Every k-th timestep's (input_ids, states) is kept (k = steps // max_feeds), t = 0 included, so the
    calibrated ranges cover the state as it evolves, not only the zero state.
    """
    batch = streams_of(ids, streams)[:, : steps + 1]  # (B, L)
    if batch.shape[1] < 2:
        raise RnnedgeError("calibration text too short for the step graph")
    every = max(1, (batch.shape[1] - 1) // max_feeds)
    feeds: list[Feed] = []

    def keep(t: int, x: np.ndarray, _logits: np.ndarray, states: list[np.ndarray]) -> None:
        if t % every == 0:
            feeds.append(_feed(graph, x, states))

    StepRunner(graph).run(batch, hook=keep)
    return feeds


def split_feeds(feeds: list[Feed], batch: int | None) -> list[Feed]:
    """Feeds of B streams -> feeds of `batch` streams each (B a multiple of it); unchanged when None."""
    if batch is None:
        return feeds
    out = []
    for feed in feeds:
        b = len(feed[INPUT_IDS])
        out += [{k: v[i : i + batch] for k, v in feed.items()} for i in range(0, b - b % batch, batch)]
    return out


def parallel_feeds(
    graph: GraphSession,
    ids: np.ndarray,
    *,
    lengths: tuple[int, ...] = (16, 64, 256),
    batch: int = 4,
    per_length: int = 4,
) -> list[Feed]:
    """Feeds for the parallel graph: real-text windows of several lengths, from zero and carried states."""
    limit = graph.info.max_seq_len or max(lengths)
    feeds: list[Feed] = []
    rng = np.random.default_rng(0)
    for wanted in lengths:
        length = min(wanted, limit, max(2, len(ids) // (2 * batch)))
        for k in range(per_length):
            starts = rng.integers(0, max(1, len(ids) - 2 * length), size=batch)
            prefix = np.stack([ids[s : s + length] for s in starts])  # (B, T)
            window = np.stack([ids[s + length : s + 2 * length] for s in starts])  # (B, T)
            states = graph.zero_states(batch)
            if k % 2 == 1:  # the state carried in by the text before the window
                states = graph.run(prefix, states)[1]
            feeds.append(_feed(graph, window, states))
    return feeds


def calibration_feeds(recipe: Recipe, graph: GraphSession, ids: np.ndarray) -> list[Feed]:
    """The feeds `recipe` (a calibrating one: calib_steps, calib_method) calibrates `graph` (fp32) with,
    from calibration ids (N,). A fixed-batch graph (qnn-htp) is fed its own batch: each step's B
    streams are split into feeds of N."""
    steps: int = getattr(recipe, "calib_steps", 512)
    method: str = getattr(recipe, "calib_method", "minmax")
    if graph.info.kind == "step":
        streams = getattr(recipe, "calib_streams", STREAMS)
        per_stream = getattr(recipe, "calib_feeds", MAX_STEP_FEEDS)
        feeds = step_feeds(graph, ids, streams=streams, steps=steps, max_feeds=per_stream)
        return split_feeds(feeds, graph.fixed_batch)
    # Histogram calibrators (entropy, percentile) need every feed of one shape.
    lengths = (16, 64, 256) if method == "minmax" else (128,)
    return parallel_feeds(graph, ids, lengths=lengths)
