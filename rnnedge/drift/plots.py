"""Matplotlib figures of drift results, returned as PNG bytes (Agg canvas; pyplot's global state untouched)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rnnedge.drift.result import DriftResult

BINS = 100  # curves are averaged in this many log-spaced t bins before plotting
DPI = 72
GUIDE = "guide"  # gid of reference lines that are not data
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def log_binned(curve: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """(t, mean of the curve in each log-spaced bin of 1-based t); keeps every t when the curve is short."""
    c = np.asarray(curve, np.float64)
    edges = np.unique(np.round(np.geomspace(1, len(c) + 1, bins + 1)).astype(np.int64))
    csum = np.concatenate([[0.0], np.cumsum(c)])
    lo, hi = edges[:-1], edges[1:]
    means = (csum[hi - 1] - csum[lo - 1]) / (hi - lo)
    return np.sqrt(lo * (hi - 1.0)), means


def sides(results: Sequence[DriftResult]) -> tuple[str, str]:
    """(variant, baseline) labels: the variant names when every result compares the same two, else generic."""
    pairs = {(r.variant.variant, r.baseline.variant) for r in results}
    return pairs.pop() if len(pairs) == 1 else ("variant", "baseline")


def _mark_if_empty(ax: Any) -> None:
    """An axes whose curves are all zero or undefined (identical graphs) still gets a range and says why."""
    curves = [ln for ln in ax.lines if ln.get_gid() != GUIDE]
    if not curves:  # no line plot (bars, or nothing): nothing to mark
        return
    if any(np.any(np.isfinite(y) & (y > 0)) for y in (np.asarray(ln.get_ydata(), float) for ln in curves)):
        return
    xs = [np.asarray(ln.get_xdata(), float) for ln in curves]
    ax.set_xlim(1, max([2.0, *(float(x.max()) for x in xs if x.size)]))
    ax.set_ylim(*((1e-9, 1.0) if ax.get_yscale() == "log" else (0.0, 2.0)))
    ax.text(0.5, 0.5, "all zero (identical to the baseline)", transform=ax.transAxes, ha="center", color="grey")


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (tight layout, 72 dpi, a 256-colour palette when Pillow is there); an axes
    whose curves are all zero or undefined gets a range and says so."""
    for ax in fig.axes:
        _mark_if_empty(ax)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    try:  # a 256-colour palette makes line plots ~3x smaller (Pillow ships with matplotlib)
        from PIL import Image

        small = io.BytesIO()
        Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(colors=256).save(
            small, format="PNG", optimize=True
        )
        return small.getvalue()
    except ImportError:
        return buf.getvalue()


def _positive(y: np.ndarray) -> np.ndarray:
    return np.where(y > 0, y, np.nan)  # log axes: zeros are not drawn


def _state_lines(ax: Any, results: Sequence[DriftResult]) -> None:
    many = len(results) > 1
    for i, r in enumerate(results):
        series = (
            [(r.name, r.worst_state, r.worst_state_one)]
            if many
            else [
                (n, r.state_err[s].mean(axis=1), r.state_err_one[s].mean(axis=1)) for s, n in enumerate(r.state_names)
            ]
        )
        for j, (label, acc, one) in enumerate(series):
            color = COLORS[(i if many else j) % len(COLORS)]
            ax.plot(*_binned_pos(acc), color=color, lw=1.4, label=f"{label} accumulated")
            ax.plot(*_binned_pos(one), color=color, lw=1.0, ls="--", label=f"{label} one-step")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("t (characters)")
    ax.set_ylabel("relative L2 state error" + (" (worst state)" if many else ""))
    ax.grid(True, which="both", alpha=0.3)
    # Below the axes, not over the curves (one entry per state and kind; several layers are many).
    ax.legend(fontsize=7, ncol=2 if len(ax.lines) <= 6 else 3, loc="upper center", bbox_to_anchor=(0.5, -0.16))


def _binned_pos(curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, y = log_binned(curve)
    return t, _positive(y)


def _per_model(ax: Any, results: Sequence[DriftResult], key: str, ylabel: str, log_y: bool = True) -> None:
    for i, r in enumerate(results):
        t, y = log_binned(np.asarray(getattr(r, key), np.float64).mean(axis=1))
        ax.plot(t, _positive(y) if log_y else y, color=COLORS[i % len(COLORS)], lw=1.3, label=r.name)
        one = key + "_one"
        if hasattr(r, one):
            t1, y1 = log_binned(np.asarray(getattr(r, one), np.float64).mean(axis=1))
            ax.plot(t1, _positive(y1), color=COLORS[i % len(COLORS)], lw=1.0, ls="--", label=f"{r.name} one-step")
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("t (characters)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def headline(results: Sequence[DriftResult]) -> bytes:
    """State error (accumulated solid, one-step dashed) and KL vs t, log-log: the README figure."""
    variant, baseline = sides(results)
    fig = Figure(figsize=(11, 5.0))
    a, b = fig.subplots(1, 2)
    _state_lines(a, results)
    a.set_title(f"{variant} vs {baseline}: state error")
    _per_model(b, results, "kl", f"KL({baseline} ‖ {variant}) nats")
    b.set_title("next-char distribution: KL vs t")
    return figure_png(fig)


def state_layers(result: DriftResult) -> bytes:
    """One panel per layer: each state tensor's accumulated and one-step error vs t (log-log)."""
    layers = sorted({s.layer for s in result.states})
    fig = Figure(figsize=(3.6 * len(layers) + 0.8, 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(layers), sharey=True))
    for ax, layer in zip(axes, layers, strict=True):
        for s, n in enumerate(result.state_names):
            if result.states[s].layer != layer:
                continue
            color = COLORS[s % len(COLORS)]
            ax.plot(*_binned_pos(result.state_err[s].mean(axis=1)), color=color, lw=1.4, label=f"{n} accumulated")
            ax.plot(
                *_binned_pos(result.state_err_one[s].mean(axis=1)), color=color, ls="--", lw=1.0, label=f"{n} one-step"
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{result.name} ({result.variant.variant} vs {result.baseline.variant}): layer {layer}")
        ax.set_xlabel("t")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("relative L2 state error")
    return figure_png(fig)


def logits(results: Sequence[DriftResult]) -> bytes:
    """Max-abs logit error and top-1 agreement vs t."""
    variant, baseline = sides(results)
    fig = Figure(figsize=(11, 4.0))
    a, b = fig.subplots(1, 2)
    _per_model(a, results, "logit_err", f"max |logit {variant} − logit {baseline}|")
    a.set_title("max-abs logit error")
    for i, r in enumerate(results):
        t, y = log_binned(r.top1.mean(axis=1))
        b.plot(t, y, color=COLORS[i % len(COLORS)], lw=1.3, label=r.name)
    b.set_xscale("log")
    b.set_ylim(min(0.9, b.get_ylim()[0]), 1.005)
    b.set_xlabel("t (characters)")
    b.set_ylabel("top-1 agreement (fraction of streams)")
    b.set_title(f"top-1 agreement, {variant} vs {baseline}")
    b.grid(True, which="both", alpha=0.3)
    b.legend(fontsize=7)
    return figure_png(fig)


def accumulation(results: Sequence[DriftResult]) -> bytes:
    """Accumulated / one-step state error vs t (worst state of each model; every state for one model)."""
    fig = Figure(figsize=(7, 3.8))
    ax = fig.subplots()
    for i, r in enumerate(results):
        pairs = (
            [(r.name, r.worst_state, r.worst_state_one)]
            if len(results) > 1
            else [
                (n, r.state_err[s].mean(axis=1), r.state_err_one[s].mean(axis=1)) for s, n in enumerate(r.state_names)
            ]
        )
        for j, (label, acc, one) in enumerate(pairs):
            t, ya = log_binned(acc)
            _, yo = log_binned(one)
            ratio = np.where(yo > 0, ya / np.where(yo > 0, yo, 1.0), np.nan)
            ax.plot(t, ratio, color=COLORS[(i + j) % len(COLORS)], lw=1.3, label=label)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":", gid=GUIDE)
    ax.set_xscale("log")
    ax.set_xlabel("t (characters)")
    ax.set_ylabel("accumulated / one-step error")
    variant, baseline = sides(results)
    ax.set_title(f"does the recurrence compound the error? ({variant} vs {baseline})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return figure_png(fig)
