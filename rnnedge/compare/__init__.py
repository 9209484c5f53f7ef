"""RNNs vs attention on one text: the same measurements for every model, side by side (no torch).

    run_compare(paths, data, out, settings, exporter=..., costs=...)  -> compare.json object (run.py)

sources.py reads the arguments (checkpoints or export folders) and refuses what cannot be compared,
measure.py measures one export (loss, memory, latency, throughput, drift; latency.py, memory.py,
resident.py), report.py, pages.py and plots.py write REPORT/compare.{json,md,html} with PNG plots.
Checkpoints are exported by a callable the caller passes in (torch stays in rnnedge.exporter), and so
are parameter and MAC counts (rnnedge.models.costs). See docs/compare.md.

Names load on first use, so `python -m rnnedge.compare.resident` (the memory probe's child process)
imports nothing but the runtime.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CompareSettings": "rnnedge.compare.settings",
    "PAPER": "rnnedge.compare.settings",
    "run_compare": "rnnedge.compare.run",
    "SCHEMA": "rnnedge.compare.report",
    "write_report": "rnnedge.compare.report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rnnedge.compare' has no attribute {name!r}")
