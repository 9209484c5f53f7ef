"""The comparison's figures as PNG bytes, drawn from the compare.json object (drift's from its results).

Same look as the drift report: matplotlib's Agg canvas (pyplot's global state untouched), the
drift plots' colours and PNG encoding (rnnedge.drift.plots).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rnnedge.drift import DriftResult
from rnnedge.drift.plots import COLORS, figure_png, headline
from rnnedge.graphmeta import FP32

MIB = float(1 << 20)


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _colors(n: int) -> list[str]:
    return [_color(i) for i in range(n)]


def _names(report: dict[str, Any]) -> list[str]:
    return [m["name"] for m in report["models"]]


def _loss_bars(ax: Any, report: dict[str, Any]) -> None:
    variant, models = report["settings"]["variant"], report["models"]
    x = np.arange(len(models))
    for k, (precision, hatch) in enumerate(((FP32, ""), (variant, "//"))):
        values = [m["loss"][precision]["nats_per_char"] for m in models]
        ax.bar(x + (k - 0.5) * 0.38, values, 0.38, color=_colors(len(models)), hatch=hatch, alpha=0.85 - 0.3 * k)
    paper = [(i, m["paper_nats_per_char"]) for i, m in enumerate(models) if m["paper_nats_per_char"] is not None]
    if paper:
        ax.plot([i for i, _ in paper], [v for _, v in paper], "k*", ms=10, label="the paper's figure (its own models)")
        ax.legend(fontsize=7, loc="lower right")
    shown = [m["loss"][p]["nats_per_char"] for m in models for p in (FP32, variant)] + [v for _, v in paper]
    ax.set_ylim(max(0.0, min(shown) - 0.15), max(shown) + 0.1)  # the differences, not the distance from zero
    ax.set_xticks(x, _names(report), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("held-out nats/char")
    ax.set_title(f"held-out loss: {FP32} (plain) and {variant} (hatched)")
    ax.grid(True, axis="y", alpha=0.3)


def _state_lines(ax: Any, report: dict[str, Any]) -> None:
    ts = report["state_t"]
    for i, m in enumerate(report["models"]):
        state = m["state"]
        ax.plot(ts, state["bytes_vs_t"], color=_color(i), lw=1.6, label=m["name"])
        if state["cache"] is not None:
            ax.plot(
                ts,
                state["cache"]["growing_bytes_vs_t"],
                color=_color(i),
                lw=1.0,
                ls="--",
                label=f"{m['name']}: growing cache",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("t (tokens streamed)")
    ax.set_ylabel("state bytes per stream")
    ax.set_title("state / cache memory per stream vs t")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _latency_lines(ax: Any, report: dict[str, Any], precision: str, p99: bool) -> None:
    for i, m in enumerate(report["models"]):
        at = m["step_latency_us"][precision]
        ts = sorted(int(t) for t in at)
        ax.plot(ts, [at[str(t)]["p50"] for t in ts], "o-", color=_color(i), lw=1.4, label=m["name"])
        if p99:
            ax.plot(ts, [at[str(t)]["p99"] for t in ts], ":", color=_color(i), lw=1.0)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("position t in the stream")
    ax.set_ylabel("step latency µs" + (" (p50 solid, p99 dotted)" if p99 else " (p50)"))
    ax.set_title(f"{precision} step graph, batch 1")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def compare_headline(report: dict[str, Any]) -> bytes:
    """Loss (fp32 and variant, with the paper's figures), state bytes vs t and step latency (p50) vs t."""
    fig = Figure(figsize=(15, 4.4))
    a, b, c = fig.subplots(1, 3)
    _loss_bars(a, report)
    _state_lines(b, report)
    _latency_lines(c, report, FP32, p99=False)
    return figure_png(fig)


def latency(report: dict[str, Any]) -> bytes:
    """Step latency p50/p99 vs position t, fp32 and the variant side by side."""
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, precision in zip(axes, (FP32, report["settings"]["variant"]), strict=True):
        _latency_lines(ax, report, precision, p99=True)
    return figure_png(fig)


def throughput(report: dict[str, Any]) -> bytes:
    """Parallel-graph tokens/s at each length, fp32 and the variant (no bar where a variant has no parallel graph)."""
    variant, models = report["settings"]["variant"], report["models"]
    lengths = [str(t) for t in report["settings"]["lengths"]]
    fig = Figure(figsize=(5 + 1.2 * len(models), 4.0))
    ax = fig.subplots()
    x = np.arange(len(models))
    width = 0.8 / (2 * len(lengths))
    for j, (precision, length) in enumerate((p, t) for p in (FP32, variant) for t in lengths):
        values = [
            (m["parallel_throughput"][precision] or {}).get(length, {}).get("tokens_per_s", np.nan) for m in models
        ]
        ax.bar(
            x - 0.4 + (j + 0.5) * width, values, width, color=COLORS[j % len(COLORS)], label=f"{precision} T={length}"
        )
    ax.set_xticks(x, _names(report), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("tokens/s (batch 1)")
    ax.set_title("parallel graph throughput")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return figure_png(fig)


def costs(report: dict[str, Any]) -> bytes:
    """Parameters, MACs per token (weights + KV cache reads) and peak resident memory of a stream."""
    models, variant = report["models"], report["settings"]["variant"]
    x = np.arange(len(models))
    fig = Figure(figsize=(15, 4.0))
    a, b, c = fig.subplots(1, 3)
    a.bar(x, [m["costs"]["params"] / 1e6 for m in models], color=_colors(len(models)))
    a.set_ylabel("parameters (millions)")
    a.set_title("parameters")
    weights = np.array([m["costs"]["macs_weights"] for m in models]) / 1e6
    cache = np.array([m["costs"]["macs_cache"] for m in models]) / 1e6
    b.bar(x, weights, color=_colors(len(models)), label="weights")
    b.bar(x, cache, bottom=weights, color="grey", label="KV cache reads")
    b.set_ylabel("MACs per token (millions)")
    b.set_title("compute per token")
    b.legend(fontsize=7)
    for k, precision in enumerate((FP32, variant)):
        peaks = [m["resident"][precision].get("peak_bytes", np.nan) / MIB for m in models]
        c.bar(x + (k - 0.5) * 0.38, peaks, 0.38, color=_colors(len(models)), alpha=0.85 - 0.3 * k, hatch="//" * k)
    c.set_ylabel("peak resident MiB (whole process)")
    c.set_title(f"a streaming process: {FP32} plain, {variant} hatched")
    for ax in (a, b, c):
        ax.set_xticks(x, _names(report), rotation=30, ha="right", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    return figure_png(fig)


# (path in the report folder, caption, PNG bytes), in report.FIGURES order.
FigureFile = tuple[str, str, bytes]


def figures(report: dict[str, Any], drift: Sequence[DriftResult]) -> list[FigureFile]:
    """Every figure of the report with its file name and caption."""
    variant = report["settings"]["variant"]
    return [
        ("compare.png", "Held-out loss, state bytes per stream vs t, and step latency vs t", compare_headline(report)),
        ("plots/latency.png", f"Step latency p50/p99 vs position t, {FP32} and {variant}", latency(report)),
        ("plots/throughput.png", "Parallel-graph tokens/s at each length", throughput(report)),
        ("plots/costs.png", "Parameters, MACs per token and peak resident memory of a stream", costs(report)),
        ("plots/drift.png", f"{variant} vs {FP32} drift: state error and KL vs t", headline(drift)),
    ]
