"""The per-timestep numbers a drift run compares (numpy only; shapes in comments)."""

from __future__ import annotations

import numpy as np

_TINY = 1e-30


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities along the last axis, computed in float64."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kl_divergence(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """KL(p‖q) in nats of the softmax distributions, over the last axis; >= 0, 0 when identical."""
    lp = log_softmax(logits_p)  # (..., V)
    lq = log_softmax(logits_q)  # (..., V)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)  # (...)
    return np.maximum(kl, 0.0)


def relative_error(approx: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """‖approx − ref‖₂ / ‖ref‖₂ over the last axis (one number per row); 0/0 counts as 0."""
    a = np.asarray(approx, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    num = np.sqrt(((a - r) ** 2).sum(axis=-1))  # (...)
    den = np.sqrt((r**2).sum(axis=-1))  # (...)
    return np.where(num == 0.0, 0.0, num / np.maximum(den, _TINY))


def max_abs_error(approx: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """max |approx − ref| over the last axis."""
    return np.abs(np.asarray(approx, dtype=np.float64) - np.asarray(ref, dtype=np.float64)).max(axis=-1)


def top1_agreement(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """True where both distributions put their largest logit on the same token."""
    return np.argmax(logits_p, axis=-1) == np.argmax(logits_q, axis=-1)


def nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """−log p(target) in nats; logits (..., V), targets (...) int."""
    lp = log_softmax(logits)  # (..., V)
    return -np.take_along_axis(lp, np.asarray(targets, dtype=np.int64)[..., None], axis=-1)[..., 0]


def stream_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and 90th percentile over streams of a (T, B) array -> two (T,) arrays."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": v.mean(axis=-1), "p90": np.percentile(v, 90, axis=-1)}
