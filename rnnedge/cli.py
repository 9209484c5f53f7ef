"""`rnnedge` command line: a thin typer layer over the Python API.

Each area registers its own commands (rnnedge/_cli/*.py) and imports torch, onnx or onnxruntime
only inside the command, so `rnnedge generate` runs on a device that has no torch.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

import typer

from rnnedge import __version__, scratch
from rnnedge._cli.common import INTERRUPTED
from rnnedge.models.registry import MIXER_NAMES

app = typer.Typer(
    name="rnnedge",
    help=f"Char-LMs around interchangeable mixers ({', '.join(MIXER_NAMES)}): train, export to ONNX, int8 "
    "and other precision variants, per-timestep drift.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without `<bool>` metavars, no boxes
)

_AREAS = ("train", "export", "runtime", "quantize", "drift", "compare", "pipeline", "inspect", "targets")


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


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends a command like Ctrl-C does: temp files are removed on the way out (rnnedge.io)."""
    raise KeyboardInterrupt


def main() -> None:
    """The `rnnedge` entry point: a usage error (unknown option, missing argument, bad value) is one
    line `rnnedge: error: …` and exit code 1, like every other bad input; SIGTERM is handled as Ctrl-C."""
    signal.signal(signal.SIGTERM, _terminate)
    scratch.enter()  # temp files of this run (and of the libraries it calls): swept if it is SIGKILLed
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):  # not a click/typer usage error
            from rnnedge._cli.common import _one_line

            ended = _one_line(exc)  # outside a command (e.g. converting an option): still one line
            raise SystemExit(getattr(ended, "exit_code", 1)) from None
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `rnnedge` / `rnnedge CMD`: the help, not an error
            typer.echo(exc.format_message())
            raise SystemExit(0) from None
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"rnnedge: error: {exc.format_message()}{where}", err=True)
        raise SystemExit(1) from None
    finally:
        scratch.leave()
    if code == INTERRUPTED:
        _exit_interrupted()
    raise SystemExit(code if isinstance(code, int) else 0)


def _exit_interrupted() -> None:
    """End an interrupted command now, with exit code 130. Its line is printed, its temp files removed and
    its locks released by then; what is left is CPython's own shutdown, from which an interrupted run was
    once seen (1 of ~10 CI runs, a SIGTERM during a pipeline's drift stage) to die by SIGINT instead of
    returning 130. Nothing rnnedge needs runs in that shutdown, so it is skipped: the exit code is the
    one the README promises, whatever the libraries' teardown would do."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)


if __name__ == "__main__":
    main()
