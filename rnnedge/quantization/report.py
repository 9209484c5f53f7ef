"""Drift reports people read: REPORT/report.json (schema rnnedge-drift-report/1), report.md, a
self-contained report.html (PNGs as data URIs, inline CSS) and drift.png, the headline figure.

The folder is built under a temp name beside REPORT and renamed into place at the end, so an error
or Ctrl-C leaves nothing half-written. An existing REPORT is replaced only if it is empty or an
earlier drift report.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rnnedge import __version__
from rnnedge.errors import RnnedgeError
from rnnedge.io import write_bytes, write_text
from rnnedge.quantization import plots
from rnnedge.quantization.d_summary import summarize, verdict
from rnnedge.quantization.drift import DriftResult

SCHEMA = "rnnedge-drift-report/1"
CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 7px;"
    "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    ".verdict{background:#f6f8fa;border-left:4px solid #1f77b4;padding:.6em 1em;margin:.6em 0}"
    "pre{background:#f6f8fa;padding:.5em;white-space:pre-wrap}"
)


def check_target(out: str | os.PathLike[str]) -> Path:
    """RRnnedgeError unless REPORT is free, empty, or an earlier drift report (which is replaced)."""
    out = Path(out)
    if out.exists() and not _replaceable(out):
        raise RnnedgeError(f"{out} exists and is not an rnnedge drift report; choose another --out")
    return out


def _replaceable(out: Path) -> bool:
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return f'"schema": "{SCHEMA}"' in (out / "report.json").read_text(encoding="utf-8")
    return False


def build(results: Sequence[DriftResult], settings: dict[str, Any]) -> dict[str, Any]:
    """The report.json object for one or more drift results."""
    models = [summarize(r) for r in results]
    for m in models:
        m["verdict"] = verdict(m)
    return {
        "schema": SCHEMA,
        "rnnedge_version": __version__,
        "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "settings": settings,
        "models": models,
    }


def to_json(report: dict[str, Any]) -> str:
    """Indented JSON with every list of numbers kept on one line (curves stay readable and small)."""
    text = json.dumps(report, indent=2)
    return _NUM_LIST.sub(lambda m: "[" + ", ".join(re.split(r",\s*", m.group(1).strip())) + "]", text) + "\n"


_NUM_LIST = re.compile(r"\[\s*((?:-?[0-9][0-9.eE+-]*|null)(?:,\s*(?:-?[0-9][0-9.eE+-]*|null))*)\s*\]")


def _fmt(x: Any, spec: str = ".2e") -> str:
    return "–" if x is None else format(x, spec)


def summary_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (shared by report.md and report.html)."""
    head = [
        "model",
        "arch",
        "int8",
        "fp32 nats/char",
        "int8 nats/char",
        "Δ nats/char",
        "err t=10",
        "err t=100",
        "err t=1000",
        "err last",
        "α",
        "saturation",
        "sat. step",
        "acc./1-step",
        "top-1",
        "divergence",
    ]
    rows = []
    for m in report["models"]:
        se, at, fit = m["state_error"], m["state_error"]["at"], m["state_error"]["fit"]
        div = m["free_running"]["diverged_at"]
        rows.append(
            [
                m["name"],
                m["arch"],
                m["method"],
                _fmt(m["loss"]["fp32_nats_per_char"], ".4f"),
                _fmt(m["loss"]["int8_nats_per_char"], ".4f"),
                _fmt(m["loss"]["delta_nats_per_char"], "+.4f"),
                _fmt(at.get("10")),
                _fmt(at.get("100")),
                _fmt(at.get("1000")),
                f"{_fmt(at['last'])} (t={m['steps']})",
                _fmt(fit["alpha"], ".2f"),
                _fmt(fit["saturation_level"]),
                str(fit["saturation_step"]),
                _fmt(se["accumulation_last"], ".2f"),
                f"{m['top1_agreement']:.2%}",
                f"none in {m['free_running']['steps']}" if div is None else str(div),
            ]
        )
    return head, rows


def _figures(results: Sequence[DriftResult]) -> list[tuple[str, str, bytes]]:
    figs = [("drift.png", "State error (accumulated solid, one-step dashed) and KL vs t", plots.headline(results))]
    for i, r in enumerate(results):
        figs.append((f"layers_{i}.png", f"{r.name} ({r.arch}): every state tensor per layer", plots.state_layers(r)))
    figs.append(("logits.png", "Max-abs logit error and top-1 agreement vs t", plots.logits(results)))
    figs.append(("accumulation.png", "Accumulated / one-step state error vs t", plots.accumulation(results)))
    return figs


def markdown(report: dict[str, Any], figs: list[tuple[str, str, bytes]]) -> str:
    head, rows = summary_rows(report)
    s = report["settings"]
    lines = [
        f"# rnnedge drift report ({', '.join(m['name'] for m in report['models'])})",
        "",
        f"{s['steps']} steps × {s['streams']} streams of `{s['data']}`; created {report['created_utc']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [
        "",
        "State error = relative L2 error of the worst state tensor, mean over streams, median over "
        "[0.9t, 1.1t]. α = power-law exponent of err ≈ c·t^α.",
        "",
        "## Verdicts",
        "",
    ]
    for m in report["models"]:
        lines += [f"**{m['name']}** ({m['arch']}): {m['verdict']}", ""]
        fr = m["free_running"]
        lines += [
            f"Greedy from `{fr['prompt']!r}`:",
            "",
            "```",
            f"fp32: {fr['fp32_text']!r}",
            f"int8: {fr['int8_text']!r}",
            "```",
            "",
        ]
        lines += [f"- note: {n}" for n in m["notes"]]
    lines += ["## Plots", "", f"![{figs[0][1]}](drift.png)\n"] + [f"![{c}](plots/{n})\n" for n, c, _ in figs[1:]]
    return "\n".join(lines) + "\n"


def html_page(report: dict[str, Any], figs: list[tuple[str, str, bytes]]) -> str:
    e = html.escape
    head, rows = summary_rows(report)
    s = report["settings"]
    table = "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>"
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>rnnedge drift report</title>"
        f"<style>{CSS}</style></head><body><h1>rnnedge drift report</h1>",
        f"<p>{s['steps']} steps × {s['streams']} streams of <code>{e(str(s['data']))}</code>; "
        f"created {e(report['created_utc'])} by rnnedge {e(report['rnnedge_version'])}.</p>",
        table,
        "<p>State error = relative L2 error of the worst state tensor (mean over streams). "
        "One-step = int8 fed the fp32 state every step; accumulated = int8 fed its own state.</p>",
    ]
    for m in report["models"]:
        fr = m["free_running"]
        parts.append(f"<h2>{e(m['name'])} ({e(m['arch'])})</h2><div class='verdict'>{e(m['verdict'])}</div>")
        parts.append(
            f"<pre>prompt: {e(repr(fr['prompt']))}\nfp32:   {e(repr(fr['fp32_text']))}\n"
            f"int8:   {e(repr(fr['int8_text']))}</pre>"
        )
        parts += [f"<p>note: {e(n)}</p>" for n in m["notes"]]
    parts.append("<h2>Plots</h2>")
    for _, cap, png in figs:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<figure><img alt='{e(cap)}' src='data:image/png;base64,{data}'><figcaption>{e(cap)}</figcaption></figure>"
        )
    return "\n".join(parts) + "</body></html>\n"


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a report is meant to be shared
        yield tmp
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "r")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_report(
    results: Sequence[DriftResult], out: str | os.PathLike[str], settings: dict[str, Any]
) -> dict[str, Any]:
    """Write REPORT/{report.json, report.md, report.html, drift.png, plots/*.png}; returns the JSON object."""
    if not results:
        raise RnnedgeError("no drift results to report")
    out = check_target(out)
    report = build(results, settings)
    figs = _figures(results)
    with _staging(out) as tmp:
        write_bytes(tmp / "drift.png", figs[0][2])
        for name, _, png in figs[1:]:
            write_bytes(tmp / "plots" / name, png)
        write_text(tmp / "report.json", to_json(report))
        write_text(tmp / "report.md", markdown(report, figs))
        write_text(tmp / "report.html", html_page(report, figs))
    return report
