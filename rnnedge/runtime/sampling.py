"""Choosing the next token from logits: greedy, temperature, top-k, top-p (nucleus). Seeded, reproducible."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rnnedge.errors import ConfigError


@dataclass(frozen=True)
class Sampler:
    """`sampler(logits (B, V)) -> ids (B,)`.

    temperature 0 is greedy (argmax); otherwise softmax(logits / temperature) restricted to the
    `top_k` most likely tokens and then to the smallest set whose probability reaches `top_p`
    (both optional, applied in that order). The same seed gives the same tokens.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    _rng: np.random.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {t!r}")
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise ConfigError(f"top_k must be a positive integer (or None for no limit), got {k!r}")
        p = self.top_p
        if p is not None and (
            isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 < p <= 1
        ):
            raise ConfigError(f"top_p must be in (0, 1] (or None for no limit), got {p!r}")
        s = self.seed
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0):
            raise ConfigError(f"seed must be a non-negative integer, got {s!r}")
        object.__setattr__(self, "_rng", np.random.default_rng(s))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """The (B, V) float64 distribution the sampler draws from (one-hot argmax when greedy)."""
        lg = np.asarray(logits, dtype=np.float64)
        if lg.ndim == 1:
            lg = lg[None]  # (1, V)
        if not np.isfinite(lg).all():
            raise ConfigError("logits hold NaN or infinite values")
        rows = np.arange(lg.shape[0])
        if self.greedy:
            probs = np.zeros_like(lg)
            probs[rows, lg.argmax(axis=1)] = 1.0
            return probs
        z = lg / self.temperature  # (B, V)
        if self.top_k is not None and self.top_k < z.shape[1]:
            kth = np.partition(z, -self.top_k, axis=1)[:, -self.top_k][:, None]  # (B, 1)
            z = np.where(z >= kth, z, -np.inf)
        z = z - z.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)  # (B, V)
        if self.top_p is not None and self.top_p < 1:
            order = np.argsort(-probs, axis=1, kind="stable")  # (B, V)
            sorted_p = np.take_along_axis(probs, order, axis=1)
            # keep a token if the mass before it is still short of top_p (so the top token always stays)
            keep_sorted = (np.cumsum(sorted_p, axis=1) - sorted_p) < self.top_p
            keep = np.zeros_like(keep_sorted)
            np.put_along_axis(keep, order, keep_sorted, axis=1)
            probs = np.where(keep, probs, 0.0)
            probs /= probs.sum(axis=1, keepdims=True)
        return probs

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """One token id per row of logits (B, V) -> (B,) int64."""
        lg = np.asarray(logits)
        if self.greedy:
            if lg.ndim == 1:
                lg = lg[None]
            if not np.isfinite(lg).all():
                raise ConfigError("logits hold NaN or infinite values")
            return lg.argmax(axis=1).astype(np.int64)
        probs = self.probabilities(lg)  # (B, V)
        cdf = np.cumsum(probs, axis=1)  # (B, V)
        u = self._rng.random((probs.shape[0], 1)) * cdf[:, -1:]  # (B, 1)
        ids = (cdf <= u).sum(axis=1)  # first index whose cdf exceeds u
        return np.minimum(ids, probs.shape[1] - 1).astype(np.int64)
