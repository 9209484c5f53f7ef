"""The comparison report: REPORT/compare.json (schema rnnedge-compare-report/1, see docs/compare.md),
compare.md, a self-contained compare.html, compare.png and plots/*.png, plus REPORT/exports/<name>/
for the models exported from checkpoints.

compare.json lists every file the report wrote; a re-run into the same folder replaces only those
(rnnedge.drift.folder, with this report's manifest), so whatever else a user keeps there stays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rnnedge import __version__
from rnnedge.compare.measure import Measured
from rnnedge.compare.pages import html_page, markdown
from rnnedge.compare.plots import figures
from rnnedge.compare.settings import PAPER, STATE_T, CompareSettings
from rnnedge.drift.folder import ReportKind, check_target, write_files
from rnnedge.drift.report import to_json
from rnnedge.errors import RnnedgeError

SCHEMA = "rnnedge-compare-report/1"
MANIFEST = "compare.json"
COMPARE = ReportKind(MANIFEST, SCHEMA, "rnnedge compare")
EXPORTS = "exports"  # REPORT/exports/<name>/: the exports made from checkpoints
FIGURES = ("compare.png", "plots/latency.png", "plots/throughput.png", "plots/costs.png", "plots/drift.png")
REPORT_FILES = (MANIFEST, "compare.md", "compare.html", *FIGURES)


def build(
    measured: Sequence[Measured], settings: CompareSettings, data: dict[str, Any], files: Sequence[str]
) -> dict[str, Any]:
    """The compare.json object."""
    return {
        "schema": SCHEMA,
        "rnnedge_version": __version__,
        "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "settings": settings.to_dict(),
        "data": data,
        "paper": PAPER,
        "state_t": list(STATE_T),
        "files": list(files),
        "models": [m.entry for m in measured],
    }


def write_report(
    measured: Sequence[Measured],
    out: str | Path,
    settings: CompareSettings,
    data: dict[str, Any],
    staged: Mapping[str, Path] | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the report (and `staged` files, {relative path: file to move in}) into `out`; returns compare.json.

    Only files the folder's ledger proves rnnedge wrote are replaced or removed; any other non-empty
    folder, or a report file name a user's file has taken, is refused unless `overwrite`.
    """
    if not measured:
        raise RnnedgeError("no models to report")
    staged = dict(staged or {})
    names = [*REPORT_FILES, *sorted(staged)]
    target = check_target(out, names, COMPARE, overwrite=overwrite)
    report = build(measured, settings, data, names)
    figs = figures(report, [m.drift for m in measured])
    files: dict[str, bytes | Path] = {
        MANIFEST: to_json(report).encode("utf-8"),
        "compare.md": markdown(report, figs).encode("utf-8"),
        "compare.html": html_page(report, figs).encode("utf-8"),
    }
    files.update({name: png for name, _, png in figs})
    files.update(staged)
    write_files(target, files)
    return report
