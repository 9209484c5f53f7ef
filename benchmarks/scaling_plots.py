"""What `benchmarks/scaling.py` prints (a summary table) and draws (PNGs on matplotlib's Agg canvas)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from rnnedge.io import write_bytes

MIB = 2**20
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _peak(step: dict[str, Any]) -> float | None:
    mems = [e["memory"]["peak"] for e in step.values() if e.get("memory", {}).get("available")]
    return max(mems) / MIB if mems else None


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The human-readable summary of a scaling result."""
    threads = result["settings"]["threads"]
    bw = result["machine"]["memory_bandwidth"]
    lines = [f"memory bandwidth (numpy copy, read + write): {bw['copy_gbps']:.1f} GB/s", ""]
    head = "".join(f"{f'p50 µs {n}t':>12}{f'x floor {n}t':>12}" for n in threads)
    lines.append(f"{'model':<22}{'params':>12}  {'variant':<13}{head}{'floor µs':>10}{'step MB':>9}{'peak MiB':>10}")
    for m in result["models"]:
        label, params = f"{m['preset']} {m['arch']}", f"{m['params']:,}"
        for variant, v in m["variants"].items():
            cells = ""
            for n in threads:
                e = v["step"].get(f"threads{n}", {})
                cells += f"{_fmt(e.get('p50_us'), '.1f'):>12}{_fmt(e.get('over_floor'), '.2f'):>12}"
            lines.append(
                f"{label:<22}{params:>12}  {variant:<13}{cells}{v['floor_us']:>10.1f}"
                f"{v['step_bytes'] / 1e6:>9.2f}{_fmt(_peak(v['step']), '.1f'):>10}"
            )
            label = params = ""
        for recipe, why in m["quantize_failures"].items():
            lines.append(f"{'':<22}{'':>12}  {recipe:<13}failed: {why[:80]}")
    lines += ["", "parallel graph (fp32), tokens/s by T; exponent of time vs T"]
    for m in result["models"]:
        for key, label in (("parallel", "full"), ("parallel_chunked", "chunked")):
            sweep = m.get(key)
            if not sweep:
                continue
            rates = " ".join(f"{t[1:]}:{r['tokens_per_s']:.0f}" for t, r in sweep["by_T"].items() if "error" not in r)
            name = label if key == "parallel" else f"chunks of {sweep['chunk']}"
            lines.append(f"  {m['preset']} {m['arch']} {name}: {rates}  exponent {_fmt(sweep['time_exponent'], '.3f')}")
    deltas = result["loss_deltas"]
    if "recipes" in deltas:
        lines += ["", "loss deltas on the bundled default model (trained), held-out nats/char:"]
        for name, d in deltas["recipes"].items():
            lines.append(
                f"  {name:<13} delta {d.get('loss_delta', float('nan')):+.4f}  size {d['size_ratio']:.2f}x fp32"
            )
        for name, why in deltas["failed"].items():
            lines.append(f"  {name:<13} failed: {why[:100]}")
    drift = result["drift"]
    if "state_error_at" in drift:
        at = drift["state_error_at"]
        lines += [
            "",
            f"drift ({drift['variant']}, {drift['model'].split(':')[0]}): state error "
            + ", ".join(f"t={k}: {v:.3g}" for k, v in at.items())
            + f"; top-1 agreement {drift['top1_agreement']:.4f}",
        ]
    return lines


def _png(fig: Figure) -> bytes:
    for ax in fig.axes:  # log axes: major labels only
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    FigureCanvasAgg(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def _step_figure(result: dict[str, Any]) -> Figure:
    """Per mixer: step p50 at the first thread count vs parameters, one line per variant, floors dotted."""
    archs = list(dict.fromkeys(m["arch"] for m in result["models"]))
    n = result["settings"]["threads"][0]
    fig = Figure(figsize=(4.2 * len(archs), 3.6))
    for i, arch in enumerate(archs):
        ax = fig.add_subplot(1, len(archs), i + 1)
        rows = sorted((m for m in result["models"] if m["arch"] == arch), key=lambda m: m["params"])
        variants = list(dict.fromkeys(v for m in rows for v in m["variants"]))
        for j, variant in enumerate(variants):
            pts = [(m["params"], m["variants"][variant]) for m in rows if variant in m["variants"]]
            xs = [p for p, v in pts if "p50_us" in v["step"].get(f"threads{n}", {})]
            ys = [v["step"][f"threads{n}"]["p50_us"] for _, v in pts if "p50_us" in v["step"].get(f"threads{n}", {})]
            color = COLORS[j % len(COLORS)]
            ax.plot(xs, ys, "o-", color=color, label=variant)
            ax.plot([p for p, _ in pts], [v["floor_us"] for _, v in pts], ":", color=color)
        ax.set(xscale="log", yscale="log", xlabel="parameters", ylabel=f"µs per token, batch 1, {n} thread(s)")
        ax.set_title(f"{arch} (dotted: bytes / bandwidth)", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def _memory_figure(result: dict[str, Any]) -> Figure:
    """Step-graph bytes and peak RSS of a streaming session vs parameters, per variant (all mixers)."""
    fig = Figure(figsize=(9, 3.6))
    variants = list(dict.fromkeys(v for m in result["models"] for v in m["variants"]))
    for k, (title, value) in enumerate(
        (
            ("step graph file, MB", lambda v: v["step_bytes"] / 1e6),
            ("peak RSS of a streaming session, MiB", lambda v: _peak(v["step"])),
        )
    ):
        ax = fig.add_subplot(1, 2, k + 1)
        for j, variant in enumerate(variants):
            pts = [(m["params"], value(m["variants"][variant])) for m in result["models"] if variant in m["variants"]]
            pts = sorted((p, y) for p, y in pts if y is not None)
            ax.plot([p for p, _ in pts], [y for _, y in pts], "o", color=COLORS[j % len(COLORS)], label=variant)
        ax.set(xscale="log", yscale="log" if k == 0 else "linear", xlabel="parameters", title=title)
        ax.legend(fontsize=7)
    return fig


def _parallel_figure(result: dict[str, Any]) -> Figure:
    """fp32 parallel graph: tokens/s and peak RSS vs T, one line per model (dashed: chunked scan)."""
    fig = Figure(figsize=(10, 4))
    axes = [fig.add_subplot(1, 2, k + 1) for k in range(2)]
    for j, m in enumerate(result["models"]):
        for key, style in (("parallel", "o-"), ("parallel_chunked", "s--")):
            sweep = m.get(key)
            if not sweep:
                continue
            rows = [(int(t[1:]), r) for t, r in sweep["by_T"].items() if "error" not in r]
            label = f"{m['preset']} {m['arch']}" + (f" chunks {sweep['chunk']}" if key != "parallel" else "")
            color = COLORS[j % len(COLORS)]
            axes[0].plot([t for t, _ in rows], [r["tokens_per_s"] for _, r in rows], style, color=color, label=label)
            mem = [(t, r["memory"]["peak"] / MIB) for t, r in rows if r["memory"].get("available")]
            axes[1].plot([t for t, _ in mem], [p for _, p in mem], style, color=color, label=label)
    axes[0].set(xscale="log", yscale="log", xlabel="T (tokens, batch 1)", title="tokens/s")
    axes[1].set(xscale="log", yscale="log", xlabel="T (tokens, batch 1)", title="peak RSS, MiB")
    axes[0].legend(fontsize=6)
    return fig


def write_plots(result: dict[str, Any], folder: Path) -> list[str]:
    """step_latency.png, memory.png and parallel.png in `folder` (atomic writes); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "step_latency.png": _step_figure(result),
        "memory.png": _memory_figure(result),
        "parallel.png": _parallel_figure(result),
    }
    for name, fig in figures.items():
        write_bytes(folder / name, _png(fig))
    return [str(folder / name) for name in figures]
