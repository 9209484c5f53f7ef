"""`rnnedge` command line: a thin typer layer over the Python API.

Each area registers its own commands (rnnedge/_cli/*.py) and imports torch, onnx or onnxruntime
only inside the command, so `rnnedge generate` runs on a device that has no torch.
"""

from __future__ import annotations

import importlib

import typer

from rnnedge import __version__

app = typer.Typer(
    name="rnnedge",
    help="Recurrent char-LMs (minGRU, minLSTM, GRU, LSTM): train, export to ONNX, int8, per-timestep drift.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_AREAS = ("train", "export", "runtime", "quantize", "drift", "pipeline")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rnnedge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """rnnedge: from parallel-scan training to int8 on the edge."""


for _area in _AREAS:
    try:
        _module = importlib.import_module(f"rnnedge._cli.{_area}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"rnnedge._cli.{_area}":
            raise
        continue
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
