"""Per-timestep drift between two precision variants of one exported step graph (no torch, no onnx).

    run_drift(folder, text, variant=..., baseline="fp32")  -> DriftResult   (run.py; graphs.py picks the files)
    write_report([result, ...], out, settings)              -> report.json object (report.py, folder.py)

metrics.py holds the per-step numbers, fit.py the growth fits, summary.py the JSON entry and verdict,
plots.py and pages.py what people look at.
"""

from rnnedge.drift.graphs import GraphPair, open_pair
from rnnedge.drift.report import SCHEMA, write_report
from rnnedge.drift.result import ComparedGraph, DriftResult, FreeRun
from rnnedge.drift.run import run_drift
from rnnedge.drift.summary import summarize, verdict

__all__ = [
    "SCHEMA",
    "ComparedGraph",
    "DriftResult",
    "FreeRun",
    "GraphPair",
    "open_pair",
    "run_drift",
    "summarize",
    "verdict",
    "write_report",
]
