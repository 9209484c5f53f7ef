"""The CLI boundary: domain errors become one line on stderr and exit code 1 (no traceback)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from rnnedge.errors import Interrupted, RnnedgeError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> typer.Exit:
    """Print `rnnedge: error: message` to stderr and return the Exit(1) to raise."""
    typer.echo(f"rnnedge: error: {message}", err=True)
    return typer.Exit(code=1)


def domain_errors(func: F) -> F:
    """Wrap a command so RnnedgeError (and Ctrl-C) end it with one clear line."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RnnedgeError as exc:
            raise fail(str(exc)) from None
        except Interrupted as exc:
            typer.echo(f"\nrnnedge: interrupted; {exc}", err=True)
            raise typer.Exit(code=130) from None
        except KeyboardInterrupt:
            typer.echo("\nrnnedge: interrupted; no partial file was written", err=True)
            raise typer.Exit(code=130) from None
        except MemoryError:
            raise fail("out of memory (try a smaller batch, sequence length or model)") from None

    return wrapper  # type: ignore[return-value]


def echo(message: str = "", *, err: bool = False) -> None:
    typer.echo(message, err=err)
    sys.stdout.flush()
