"""How an error curve grows with t: a power law, a saturation level and when it is reached (numpy only).

t is 1-based (t = 1 is the state after the first character). Every "value at t" is the median of
the curve over the window [0.9·t, 1.1·t] (at least one step), so one noisy step cannot decide it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FIT_POINTS = 64  # log-spaced t used by the power-law fit
TAIL = 0.2  # the saturation level is the median of the last 20% of t
REACH = 0.9  # saturation step: first t whose smoothed value reaches 90% of the level


@dataclass(frozen=True)
class GrowthFit:
    """err(t) ≈ c·t^alpha (log-log least squares) plus saturation figures; None where undefined."""

    alpha: float | None
    c: float | None
    r2: float | None
    saturation_level: float
    saturation_step: int
    err_10: float
    err_last: float
    t_last: int
    growth_ratio: float | None  # err(t_last) / err(10)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_spaced_steps(t_max: int, points: int = FIT_POINTS) -> np.ndarray:
    """Unique 1-based t from 1 to t_max, spaced evenly in log t."""
    return np.unique(np.round(np.geomspace(1, t_max, num=min(points, t_max))).astype(np.int64))


def value_at(curve: np.ndarray, t: int) -> float:
    """Median of the (T,) curve over [0.9·t, 1.1·t] (1-based t, clipped to the curve)."""
    n = len(curve)
    t = min(max(int(t), 1), n)
    lo, hi = max(1, math.floor(0.9 * t)), min(n, math.ceil(1.1 * t))
    return float(np.median(curve[lo - 1 : hi]))


def power_law(curve: np.ndarray, points: int = FIT_POINTS) -> tuple[float | None, float | None, float | None]:
    """(alpha, c, R² in log space) of err ≈ c·t^alpha over log-spaced t; None if < 3 positive points."""
    ts = log_spaced_steps(len(curve), points)
    ys = np.asarray(curve, np.float64)[ts - 1]
    keep = ys > 0
    if keep.sum() < 3:
        return None, None, None
    x, y = np.log(ts[keep].astype(np.float64)), np.log(ys[keep])
    alpha, logc = np.polyfit(x, y, 1)
    resid = y - (alpha * x + logc)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return float(alpha), float(math.exp(logc)), r2


def saturation(curve: np.ndarray) -> tuple[float, int]:
    """(level, step): level = median of the last 20% of t; step = first t where the curve, averaged
    over [t, 1.1·t], reaches 90% of the level."""
    c = np.asarray(curve, np.float64)
    n = len(c)
    level = float(np.median(c[int(n * (1 - TAIL)) :]))
    if level <= 0:
        return level, 1
    csum = np.concatenate([[0.0], np.cumsum(c)])
    start = np.arange(n)
    end = np.minimum(n, start + np.maximum(1, np.ceil(0.1 * (start + 1)).astype(np.int64)))
    smooth = (csum[end] - csum[start]) / (end - start)
    hit = np.flatnonzero(smooth >= REACH * level)
    return level, int(hit[0]) + 1 if hit.size else n


def fit_growth(curve: np.ndarray) -> GrowthFit:
    """Power law, saturation and the t=10 vs last-t ratio of one (T,) error curve."""
    c = np.asarray(curve, np.float64)
    alpha, coef, r2 = power_law(c)
    level, step = saturation(c)
    e10, elast = value_at(c, 10), value_at(c, len(c))
    ratio = elast / e10 if e10 > 0 else None
    return GrowthFit(alpha, coef, r2, level, step, e10, elast, len(c), ratio)
