"""The pages people read, rendered from a report.json object: report.md and a self-contained report.html."""

from __future__ import annotations

import base64
import html
from typing import Any

from rnnedge.drift.summary import scored_on

# (path in the report folder, caption, PNG bytes); the first is the headline drift.png.
Figure = tuple[str, str, bytes]

CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1240px;margin:2em auto;padding:0 1em;color:#222}"
    ".scroll{overflow-x:auto}table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 7px;text-align:right;white-space:nowrap}th{white-space:normal}"
    "td.text{white-space:normal;text-align:left;max-width:22em}"
    "td{font-variant-numeric:tabular-nums}th{background:#f3f3f3}th[title]{cursor:help;text-decoration:underline dotted}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}dt{font-weight:600}dd{margin:0 0 .4em 1.5em}"
    ".verdict{background:#f6f8fa;border-left:4px solid #1f77b4;padding:.6em 1em;margin:.6em 0}"
    "pre{background:#f6f8fa;padding:.5em;white-space:pre-wrap}"
)
TABLE_TITLES = ("Loss (nats/char) on the drift streams", "State error over t")
# What the less obvious columns of the summary table mean (report.md and report.html both show it).
COLUMN_NOTES = {
    "scored on": "the characters the two losses of this row are on: the drift streams (streams × steps of "
    "the text), not the whole text; `rnnedge eval` and `rnnedge quantize` score the whole held-out text",
    "Δ nats/char": "variant loss − baseline loss on the same text (negative: the variant predicted better)",
    "±2 s.e.": "two standard errors of Δ (batch means over time blocks and streams): a Δ smaller than this is noise",
    "err t=N": "relative L2 error of the worst state tensor after N characters, mean over streams, "
    "median over [0.9N, 1.1N]",
    "α": "power-law exponent of the state error, err ≈ c·t^α fitted in log-log: 0 = flat, 0.5 = grows like a "
    "random walk, 1 = grows linearly with t",
    "saturation": "the level the state error settles at: its median over the last 20% of t",
    "sat. step": "the first t at which the state error (averaged over [t, 1.1t]) reaches 90% of the saturation level",
    "acc./1-step": "accumulated / one-step state error at the last t: about 1 means the recurrence does not "
    "amplify the error, much more than 1 means it compounds it",
    "top-1": "fraction of steps and streams where both graphs rank the same next character first",
    "divergence": "first generated character at which greedy text from the variant differs from the baseline's",
}


def figure_html(caption: str, png: bytes) -> str:
    """One <figure> with the PNG inline as a data URI (the page stays self-contained)."""
    data = base64.b64encode(png).decode("ascii")
    cap = html.escape(caption)
    return f"<figure><img alt='{cap}' src='data:image/png;base64,{data}'><figcaption>{cap}</figcaption></figure>"


def _fmt(x: Any, spec: str = ".2e") -> str:
    return "–" if x is None else format(x, spec)


def steps_run(report: dict[str, Any]) -> str:
    """'200 steps', '120–200 steps', with the requested count when the runs did fewer."""
    done = sorted({m["steps"] for m in report["models"]})
    asked = report["settings"].get("steps")
    text = f"{done[0]} steps" if len(done) == 1 else f"{done[0]}–{done[-1]} steps (per model in the table)"
    if asked is not None and done != [asked]:
        text += f" ({asked} requested; the text is shorter)"
    return text


def summary_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the whole summary (both tables side by side; report.md and report.json users)."""
    (head_l, rows_l), (head_s, rows_s) = summary_tables(report)
    return head_l + head_s[1:], [a + b[1:] for a, b in zip(rows_l, rows_s, strict=True)]


def summary_tables(report: dict[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    """The summary as two tables that fit a 1280 px page: the loss (each row saying which characters it
    is on) and the state error. Shared by report.md and report.html."""
    data = report["settings"].get("data")
    head_l = ["model", "arch", "variant", "baseline", "scored on", "baseline nats/char", "variant nats/char"]
    head_l += ["Δ nats/char", "±2 s.e."]
    head_s = ["model", "err t=10", "err t=100", "err t=1000", "err last", "α", "saturation", "sat. step"]
    head_s += ["acc./1-step", "top-1", "divergence"]
    loss_rows, state_rows = [], []
    for m in report["models"]:
        se, at, fit, loss = m["state_error"], m["state_error"]["at"], m["state_error"]["fit"], m["loss"]
        div = m["free_running"]["diverged_at"]
        loss_rows.append(
            [
                m["name"],
                m["arch"],
                m["variant"]["variant"],
                m["baseline"]["variant"],
                scored_on(m, str(data) if data else None),
                _fmt(loss["baseline_nats_per_char"], ".4f"),
                _fmt(loss["variant_nats_per_char"], ".4f"),
                _fmt(loss["delta_nats_per_char"], "+.4f"),
                _fmt(2 * loss["delta_stderr_nats_per_char"], ".4f"),
            ]
        )
        state_rows.append(
            [
                m["name"],
                _fmt(at.get("10")),
                _fmt(at.get("100")),
                _fmt(at.get("1000")),
                f"{_fmt(at['last'])} (t={m['steps']})",
                _fmt(fit["alpha"], "+.2f"),
                _fmt(fit["saturation_level"]),
                str(fit["saturation_step"]),
                _fmt(se["accumulation_last"], ".2f"),
                f"{m['top1_agreement']:.2%}",
                f"none in {m['free_running']['steps']}" if div is None else str(div),
            ]
        )
    return [(head_l, loss_rows), (head_s, state_rows)]


def _note(column: str) -> str | None:
    return COLUMN_NOTES.get("err t=N" if column.startswith("err t=") else column)


def ran_on(report: dict[str, Any]) -> str:
    """Where the variant ran (its target, CPU and int8 path), or '' for reports older than targets."""
    t = report["settings"].get("target")
    if not isinstance(t, dict) or "target" not in t:
        return ""
    cpu = t.get("cpu") or t.get("device", "")
    return f"The variant ran on {t['target']} ({cpu}; int8: {t.get('int8_path', '?')}); the baseline on this CPU."


def markdown(report: dict[str, Any], figs: list[Figure]) -> str:
    """report.md: the table, what its columns mean, the verdicts, greedy texts and links to the plots."""
    s = report["settings"]
    lines = [
        f"# rnnedge drift report ({', '.join(m['name'] for m in report['models'])})",
        "",
        f"{steps_run(report)} × {s['streams']} streams of `{s['data']}`; created {report['created_utc']}. "
        + ran_on(report),
    ]
    for title, (head, rows) in zip(TABLE_TITLES, summary_tables(report), strict=True):
        lines += ["", f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "Columns:", ""] + [f"- **{k}**: {v}" for k, v in COLUMN_NOTES.items()] + ["", "## Verdicts", ""]
    for m in report["models"]:
        base, var, fr = m["baseline"]["variant"], m["variant"]["variant"], m["free_running"]
        lines += [f"**{m['name']}** ({m['arch']}): {m['verdict']}", ""]
        width = max(len(base), len(var)) + 1
        lines += [f"Greedy from `{fr['prompt']!r}`:", "", "```"]
        lines += [f"{base + ':':<{width}} {fr['baseline_text']!r}", f"{var + ':':<{width}} {fr['variant_text']!r}"]
        lines += ["```", ""] + [f"- note: {n}" for n in m["notes"]]
    lines += ["## Plots", ""] + [f"![{caption}]({path})\n" for path, caption, _ in figs]
    return "\n".join(lines) + "\n"


def _th(column: str) -> str:
    e, note = html.escape, _note(column)
    return f"<th title='{e(note)}'>{e(column)}</th>" if note else f"<th>{e(column)}</th>"


def html_page(report: dict[str, Any], figs: list[Figure]) -> str:
    """report.html: one self-contained page (inline CSS, every plot as a data URI)."""
    e = html.escape
    s = report["settings"]
    table = ""
    for title, (head, rows) in zip(TABLE_TITLES, summary_tables(report), strict=True):
        cells = "".join(
            f"<th title='{e(_note(h) or '')}'>{e(h)}</th>" if _note(h) else f"<th>{e(h)}</th>" for h in head
        )
        table += f"<h3>{e(title)}</h3><div class='scroll'><table><tr>{cells}</tr>"
        table += "".join(
            "<tr>" + "".join(f"<td class='text'>{e(c)}</td>" if h == "scored on" else f"<td>{e(c)}</td>"
                             for h, c in zip(head, r, strict=True)) + "</tr>"
            for r in rows
        ) + "</table></div>"  # fmt: skip
    notes = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in COLUMN_NOTES.items())
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>rnnedge drift report</title>"
        f"<style>{CSS}</style></head><body><h1>rnnedge drift report</h1>",
        f"<p>{e(steps_run(report))} × {s['streams']} streams of <code>{e(str(s['data']))}</code>; "
        f"created {e(report['created_utc'])} by rnnedge {e(report['rnnedge_version'])}. {e(ran_on(report))}</p>",
        table,
        "<p>Accumulated = the variant fed its own state; one-step = the variant fed the baseline's state "
        "every step. State error = relative L2 error of the worst state tensor (mean over streams).</p>",
        f"<details open><summary>What the columns mean</summary><dl>{notes}</dl></details>",
    ]
    for m in report["models"]:
        base, var, fr = m["baseline"]["variant"], m["variant"]["variant"], m["free_running"]
        width = max(len("prompt"), len(base), len(var)) + 1
        parts.append(f"<h2>{e(m['name'])} ({e(m['arch'])})</h2><div class='verdict'>{e(m['verdict'])}</div>")
        greedy = [("prompt", fr["prompt"]), (base, fr["baseline_text"]), (var, fr["variant_text"])]
        parts.append("<pre>" + "\n".join(f"{e(k + ':'):<{width}} {e(repr(v))}" for k, v in greedy) + "</pre>")
        parts += [f"<p>note: {e(n)}</p>" for n in m["notes"]]
    parts.append("<h2>Plots</h2>")
    parts += [figure_html(cap, png) for _, cap, png in figs]
    return "\n".join(parts) + "</body></html>\n"
