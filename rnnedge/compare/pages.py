"""compare.md and a self-contained compare.html, rendered from the compare.json object (the drift
report's style: rnnedge.drift.pages' CSS and inline figures)."""

from __future__ import annotations

import html
from typing import Any

from rnnedge.compare.plots import FigureFile
from rnnedge.drift.pages import CSS, figure_html
from rnnedge.graphmeta import FP32

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows

NOTES = {
    "scored on": "the characters this row's losses are on: the whole held-out text (the drift verdicts below "
    "are on the drift streams, a shorter slice, so their deltas differ)",
    "params": "every parameter of the model (embedding, mixers, MLPs, norms, head)",
    "MACs/token": "multiply-accumulates per token: one per weight of every matrix a token passes through, plus "
    "attention's reads of its KV cache (2·heads·window·head_dim per layer); elementwise work not counted",
    "state B/stream": "bytes of state one stream carries between tokens; the same at every t (fixed shapes)",
    "growing cache @65,536": "what a KV cache that kept every token (no window) would hold at t = 65,536",
    "peak RSS": "peak resident memory of a fresh process that imports the runtime, opens the step graph and "
    "streams the tokens (whole process); +session: what the session and its stream added",
    "µs @t": "step latency of the t-th token of a stream (batch 1), p50 / p99 over repeated steps from the "
    "stream's real state at t",
    "tok/s T": "parallel graph, one sequence of T tokens (batch 1, chunked at the graph's max_seq_len)",
    "paper": "the paper's own figure for this architecture (different models, sizes and budgets)",
}


def _f(x: Any, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _mib(x: Any) -> str:
    return "–" if x is None else f"{x / (1 << 20):.1f}"


def _budget(m: dict[str, Any]) -> str:
    t = m["training"]
    if not t:
        return "–"
    secs = t.get("train_time_s")
    return f"{t.get('steps_done', '?')} steps" + ("" if secs is None else f", {secs:.0f} s")


def tables(report: dict[str, Any]) -> list[Table]:
    """The report's tables (shared by compare.md and compare.html)."""
    variant, models = report["settings"]["variant"], report["models"]
    quality = [
        [
            m["name"],
            m["arch"],
            f"{m['costs']['params']:,}",
            _budget(m),
            f"{m['loss'][FP32]['chars']:,} held-out chars",
            _f(m["loss"][FP32]["nats_per_char"], ".4f"),
            _f(m["loss"][variant]["nats_per_char"], ".4f"),
            _f(m["loss"]["delta_nats_per_char"], "+.4f"),
            _f(m["paper_nats_per_char"], ".3f"),
        ]
        for m in models
    ]
    head_q = ["model", "arch", "params", "training", "scored on", f"{FP32} nats/char", f"{variant} nats/char", "Δ"]
    head_q.append("paper")
    cost = []
    for m in models:
        c, st, res = m["costs"], m["state"], m["resident"]
        growing = st["cache"]["growing_bytes_vs_t"][-1] if st["cache"] else None
        cost.append(
            [
                m["name"],
                f"{c['params']:,}",
                f"{c['macs_per_token']:,}" + (f" ({c['macs_cache']:,} cache)" if c["macs_cache"] else ""),
                f"{st['bytes_per_stream']:,}",
                "–" if growing is None else f"{growing:,}",
                *(f"{_mib(res[p].get('peak_bytes'))} (+{_mib(res[p].get('session_bytes'))})" for p in (FP32, variant)),
            ]
        )
    head_c = ["model", "params", "MACs/token", "state B/stream", "growing cache @65,536"]
    head_c += [f"peak RSS MiB {FP32}", f"peak RSS MiB {variant}"]
    positions = [str(t) for t in report["settings"]["positions"]]
    lengths = [str(t) for t in report["settings"]["lengths"]]
    speed = []
    for m in models:
        for p in (FP32, variant):
            lat, par = m["step_latency_us"][p], m["parallel_throughput"][p] or {}
            row = [m["name"], p, *(f"{lat[t]['p50']:.0f} / {lat[t]['p99']:.0f}" for t in positions)]
            row += [_f(par.get(t, {}).get("tokens_per_s"), ",.0f") for t in lengths]
            speed.append(row)
    head_s = ["model", "precision", *(f"µs @t={t}" for t in positions), *(f"tok/s T={t}" for t in lengths)]
    drift = []
    for m in models:
        d = m["drift"]
        at, fit = d["state_error"]["at"], d["state_error"]["fit"]
        drift.append(
            [
                m["name"],
                d["state_error"]["worst_state"],
                _f(at.get("10"), ".2e"),
                _f(at.get("100"), ".2e"),
                f"{_f(at['last'], '.2e')} (t={d['steps']})",
                _f(fit["alpha"], "+.2f"),
                _f(d["kl_mean"], ".2e"),
                f"{d['top1_agreement']:.2%}",
            ]
        )
    head_d = ["model", "worst state", "err t=10", "err t=100", "err last", "α", "KL mean", "top-1"]
    return [
        ("Quality: held-out loss", head_q, quality),
        ("Size and memory", head_c, cost),
        ("Speed (µs p50 / p99; tokens/s)", head_s, speed),
        (f"Drift: {variant} vs {FP32} per timestep", head_d, drift),
    ]


def _intro(report: dict[str, Any]) -> list[str]:
    s, d, paper = report["settings"], report["data"], report["paper"]
    return [
        f"{len(report['models'])} models on `{d['path']}` ({d['chars']:,} characters; the last 10% held out, "
        f"{d['held_out_chars']:,} characters scored); {FP32} vs {s['variant']}; ONNX Runtime, {s['threads']} "
        f"thread(s); created {report['created_utc']} by rnnedge {report['rnnedge_version']}.",
        f"Paper column: {paper['source']}; {paper['note']}.",
    ]


def _note_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for m in report["models"]:
        lines.append(f"{m['name']} ({m['arch']}): {m['drift']['verdict']}")
        lines += [f"{m['name']}: note: {n}" for n in m["notes"]]
    return lines


def markdown(report: dict[str, Any], figs: list[FigureFile]) -> str:
    """compare.md: the tables, what their columns mean, the drift verdicts and links to the plots."""
    lines = [f"# rnnedge comparison ({', '.join(m['name'] for m in report['models'])})", "", *_intro(report), ""]
    for title, head, rows in tables(report):
        lines += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    lines += ["Columns:", ""] + [f"- **{k}**: {v}" for k, v in NOTES.items()] + ["", "## Drift verdicts", ""]
    lines += [f"- {line}" for line in _note_lines(report)] + ["", "## Plots", ""]
    lines += [f"![{caption}]({path})\n" for path, caption, _ in figs]
    return "\n".join(lines) + "\n"


def html_page(report: dict[str, Any], figs: list[FigureFile]) -> str:
    """compare.html: one self-contained page (inline CSS, every plot as a data URI)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>rnnedge comparison</title>"
        f"<style>{CSS}</style></head><body><h1>rnnedge comparison</h1>",
        *(f"<p>{e(line)}</p>" for line in _intro(report)),
    ]
    for title, head, rows in tables(report):
        cells = "".join(f"<th>{e(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
        parts.append(f"<h2>{e(title)}</h2><div class='scroll'><table><tr>{cells}</tr>{body}</table></div>")
    notes = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in NOTES.items())
    parts.append(f"<details open><summary>What the columns mean</summary><dl>{notes}</dl></details>")
    parts.append("<h2>Drift verdicts</h2>" + "".join(f"<div class='verdict'>{e(x)}</div>" for x in _note_lines(report)))
    parts.append("<h2>Plots</h2>")
    parts += [figure_html(cap, png) for _, cap, png in figs]
    return "\n".join(parts) + "</body></html>\n"
