"""The CLI boundary: domain errors become one line on stderr and exit code 1 (no traceback)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from rnnedge.errors import Interrupted, RnnedgeError
from rnnedge.progress import close_all

F = TypeVar("F", bound=Callable[..., Any])
OVERWRITE_HELP = (
    "Write into a non-empty folder rnnedge cannot prove it wrote (no ledger): files of the same names are "
    "replaced, nothing else is deleted."
)


def fail(message: str) -> typer.Exit:
    """Print `rnnedge: error: message` to stderr and return the Exit(1) to raise."""
    typer.echo(f"rnnedge: error: {message}", err=True)
    return typer.Exit(code=1)


def domain_errors(func: F) -> F:
    """Wrap a command so RnnedgeError (and Ctrl-C) end it with one clear line (after any progress bar)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            close_all()  # a progress bar still drawn goes before the error line
            raise _one_line(exc) from None

    return wrapper  # type: ignore[return-value]


def _one_line(exc: BaseException) -> BaseException:
    """What a command's exception becomes at the CLI: one line and exit 1 (130 for Ctrl-C), or itself."""
    if isinstance(exc, RnnedgeError):
        return fail(str(exc))
    if isinstance(exc, Interrupted):
        typer.echo(f"\nrnnedge: interrupted; {exc}", err=True)
        return typer.Exit(code=130)
    if isinstance(exc, KeyboardInterrupt):
        typer.echo("\nrnnedge: interrupted; no partial file was written", err=True)
        return typer.Exit(code=130)
    if isinstance(exc, MemoryError):
        return fail("out of memory (try a smaller batch, sequence length or model)")
    return exc


def echo(message: str = "", *, err: bool = False) -> None:
    typer.echo(message, err=err)
    sys.stdout.flush()
