"""Drift reports people read: REPORT/report.json (schema rnnedge-drift-report/2, see docs/drift.md),
report.md, a self-contained report.html (PNGs as data URIs, inline CSS), drift.png (the headline
figure) and plots/*.png.

report.json lists the files the report wrote; a re-run into the same folder replaces only those
(see folder.py), so whatever else a user keeps there stays.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from rnnedge import __version__
from rnnedge.drift import plots
from rnnedge.drift.folder import REPORT_JSON, check_target, write_files
from rnnedge.drift.pages import Figure, html_page, markdown
from rnnedge.drift.result import DriftResult
from rnnedge.drift.summary import summarize, verdict
from rnnedge.errors import RnnedgeError

SCHEMA = "rnnedge-drift-report/2"
HEADLINE = "drift.png"
PAGES = (REPORT_JSON, "report.md", "report.html")


def figure_names(n_models: int) -> list[str]:
    """The PNG files of a report on `n_models` models (the headline first, then those under plots/)."""
    return [HEADLINE, *(f"plots/layers_{i}.png" for i in range(n_models)), "plots/logits.png", "plots/accumulation.png"]


def report_files(n_models: int) -> list[str]:
    """Every file a report on `n_models` models writes, relative to the report folder."""
    return [*PAGES, *figure_names(n_models)]


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
        "steps_run": max(m["steps"] for m in models),
        "files": report_files(len(models)),
        "models": models,
    }


def to_json(report: dict[str, Any]) -> str:
    """Indented JSON with every list of numbers kept on one line (curves stay readable and small)."""
    text = json.dumps(report, indent=2)
    return _NUM_LIST.sub(lambda m: "[" + ", ".join(re.split(r",\s*", m.group(1).strip())) + "]", text) + "\n"


_NUM_LIST = re.compile(r"\[\s*((?:-?[0-9][0-9.eE+-]*|null)(?:,\s*(?:-?[0-9][0-9.eE+-]*|null))*)\s*\]")


def figures(results: Sequence[DriftResult]) -> list[Figure]:
    """Every figure of the report as (path in the report folder, caption, PNG), in figure_names() order."""
    variant, baseline = plots.sides(results)
    captions = [
        f"State error (accumulated solid, one-step dashed) and KL vs t, {variant} vs {baseline}",
        *(
            f"{r.name} ({r.arch}, {r.variant.variant} vs {r.baseline.variant}): every state tensor per layer"
            for r in results
        ),
        "Max-abs logit error and top-1 agreement vs t",
        "Accumulated / one-step state error vs t",
    ]
    pngs = [
        plots.headline(results),
        *(plots.state_layers(r) for r in results),
        plots.logits(results),
        plots.accumulation(results),
    ]
    return list(zip(figure_names(len(results)), captions, pngs, strict=True))


def write_report(
    results: Sequence[DriftResult],
    out: str | os.PathLike[str],
    settings: dict[str, Any],
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write REPORT/{report.json, report.md, report.html, drift.png, plots/*.png}; returns the JSON object.

    `settings` records the run as requested (data, steps, streams, ...). Only files the folder's ledger
    proves rnnedge wrote are replaced or removed; any other non-empty folder is refused unless `overwrite`
    (rnnedge/drift/folder.py).
    """
    if not results:
        raise RnnedgeError("no drift results to report")
    target = check_target(out, report_files(len(results)), overwrite=overwrite)
    report = build(results, settings)
    figs = figures(results)
    files = {
        REPORT_JSON: to_json(report).encode("utf-8"),
        "report.md": markdown(report, figs).encode("utf-8"),
        "report.html": html_page(report, figs).encode("utf-8"),
    }
    files.update({name: png for name, _, png in figs})
    write_files(target, files)
    return report
