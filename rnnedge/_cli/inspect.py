"""`rnnedge inspect DIR`: a graph's inputs, states, variants and metadata (onnxruntime only, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rnnedge._cli.common import domain_errors, echo


@domain_errors
def inspect_cmd(
    path: Path = typer.Argument(..., help="Export folder (step.onnx, parallel.onnx, variants) or one graph file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print an export's inputs and outputs, state contract, precision variants and metadata."""
    from rnnedge.runtime.inspect import format_inspect, inspect_export

    report = inspect_export(path)
    echo(json.dumps(report, default=str) if as_json else format_inspect(report))


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_cmd)
