"""The per-timestep numbers a drift run compares (NumPy only; log-softmax and NLL from rnnedge.inference)."""

from __future__ import annotations

import numpy as np

from rnnedge.inference import log_softmax

NOISE_BLOCKS = 16  # batch means: each stream's series is cut into this many contiguous blocks


def kl_divergence(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """KL(p‖q) in nats of the softmax distributions, over the last axis; >= 0, 0 when identical."""
    lp = log_softmax(logits_p)  # (..., V)
    lq = log_softmax(logits_q)  # (..., V)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)  # (...)
    return np.maximum(kl, 0.0)


def max_abs_error(approx: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """max |approx − ref| over the last axis."""
    return np.abs(np.asarray(approx, dtype=np.float64) - np.asarray(ref, dtype=np.float64)).max(axis=-1)


def top1_agreement(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """True where both distributions put their largest logit on the same token."""
    return np.argmax(logits_p, axis=-1) == np.argmax(logits_q, axis=-1)


def squared_norms(approx: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(‖approx − ref‖², ‖ref‖²) per stream, over every dim but the first (batch): any rank, any float dtype.

    approx, ref (B, ...) -> two (B,) float64 arrays; their ratio's root is the relative L2 error.
    """
    r = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)  # (B, N)
    d = np.asarray(approx, dtype=np.float64).reshape(len(ref), -1) - r  # (B, N)
    return np.einsum("bn,bn->b", d, d), np.einsum("bn,bn->b", r, r)


def mean_and_stderr(values: np.ndarray, blocks: int = NOISE_BLOCKS) -> tuple[float, float]:
    """Mean of a (T, B) series and its standard error by batch means (time-correlated samples).

    Each stream is cut into `blocks` contiguous blocks (fewer when T is short); the standard error is
    the spread of the block means over sqrt(their count). 0 when there is a single block.
    """
    v = np.asarray(values, dtype=np.float64)  # (T, B)
    n = max(1, min(blocks, v.shape[0] // 8))
    usable = v[: (v.shape[0] // n) * n]  # (n·L, B)
    means = usable.reshape(n, -1, v.shape[1]).mean(axis=1).ravel()  # (n·B,)
    stderr = float(means.std(ddof=1) / np.sqrt(means.size)) if means.size > 1 else 0.0
    return float(v.mean()), stderr
