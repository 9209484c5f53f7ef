"""Log-softmax and negative log-likelihood in float64 (NumPy only), and splitting ids into streams."""

from __future__ import annotations

import numpy as np

from rnnedge.errors import RnnedgeError


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities along the last axis, computed in float64."""
    x = np.asarray(logits, dtype=np.float64)  # (..., V)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-position negative log-likelihood in nats. logits (..., V), targets (...) -> (...)."""
    lp = log_softmax(logits)  # (..., V)
    return -np.take_along_axis(lp, np.asarray(targets)[..., None], axis=-1)[..., 0]


def streams_of(ids: np.ndarray, streams: int) -> np.ndarray:
    """(N,) ids -> (B, L): B contiguous, disjoint slices (B shrinks so each holds at least 2 ids)."""
    streams = max(1, min(int(streams), len(ids) // 2))
    length = len(ids) // streams
    if length < 2:
        raise RnnedgeError(f"text too short: {len(ids)} characters")
    return ids[: streams * length].reshape(streams, length)  # (B, L)
