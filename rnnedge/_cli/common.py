"""The CLI boundary: every error becomes one line on stderr and exit code 1 (no traceback; RNNEDGE_DEBUG=1
shows it for errors rnnedge did not word itself)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click
import typer

from rnnedge.errors import ExportChanged, Interrupted, RnnedgeError
from rnnedge.progress import close_all

F = TypeVar("F", bound=Callable[..., Any])
INTERRUPTED = 130  # the exit code of Ctrl-C or SIGTERM: 128 + SIGINT, what shells report for Ctrl-C
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
            with warnings.catch_warnings():
                warnings.simplefilter("always", ExportChanged)
                shown = warnings.showwarning
                warnings.showwarning = functools.partial(_warning_line, shown, set())
                return func(*args, **kwargs)
        except BaseException as exc:
            close_all()  # a progress bar still drawn goes before the error line
            raise _one_line(exc) from None

    return wrapper  # type: ignore[return-value]


def _warning_line(
    shown: Callable[..., Any], said: set[str], message: Any, category: type, *args: Any, **kwargs: Any
) -> None:
    """rnnedge's own warnings (ExportChanged) as one `rnnedge: warning:` line on stderr, each once per
    command; others as Python shows them."""
    if issubclass(category, ExportChanged):
        if str(message) not in said:
            said.add(str(message))
            typer.echo(f"rnnedge: warning: {message}", err=True)
    else:
        shown(message, category, *args, **kwargs)


def _one_line(exc: BaseException) -> BaseException:
    """What a command's exception becomes at the CLI: one line and exit 1 (130 for Ctrl-C), or itself."""
    if isinstance(exc, RnnedgeError):
        return fail(str(exc))
    if isinstance(exc, Interrupted):
        typer.echo(f"\nrnnedge: interrupted; {exc}", err=True)
        return typer.Exit(code=INTERRUPTED)
    if isinstance(exc, KeyboardInterrupt):
        typer.echo("\nrnnedge: interrupted; no partial file was written", err=True)
        return typer.Exit(code=INTERRUPTED)
    if isinstance(exc, MemoryError) or _is_allocation_failure(exc):
        _debug_traceback(exc)
        return fail("out of memory (try a smaller batch, sequence length or model)")
    if isinstance(exc, (SystemExit, click.exceptions.Exit, click.exceptions.Abort, click.ClickException)):
        return exc  # typer's own exits and usage errors (cli.main words those)
    if isinstance(exc, Exception):
        _debug_traceback(exc)
        return fail(describe(exc))
    return exc


DEBUG_ENV = "RNNEDGE_DEBUG"  # RNNEDGE_DEBUG=1: the traceback of an unexpected error, before its one line
MAX_LINE = 400


def _debug_traceback(exc: BaseException) -> None:
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


def _is_allocation_failure(exc: BaseException) -> bool:
    """torch's and ONNX Runtime's allocation failures (a RuntimeError, not a MemoryError)."""
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        w in text for w in ("can't allocate memory", "out of memory", "failed to allocate", "bad_alloc")
    )


def describe(exc: BaseException) -> str:
    """One line for an exception rnnedge did not word itself: the OS's words and the file for an
    OSError (ENAMETOOLONG, EACCES, ...), the text problem for an encoding error, the engine's words
    otherwise (ONNX Runtime run errors, torch errors), on one line of at most MAX_LINE characters."""
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        name = str(where)
        if len(name) > 120:
            name = name[:60] + "..." + name[-40:]
        text = f"{name}: {exc.strerror or exc}" if name else str(exc.strerror or exc)
    elif isinstance(exc, UnicodeError):
        text = f"text cannot be encoded or decoded here ({exc}); check the file's or the terminal's encoding"
    else:
        kind = type(exc).__name__
        module = type(exc).__module__
        engine = "ONNX Runtime" if "onnxruntime" in module else ("torch" if module.startswith("torch") else None)
        first = " ".join(str(exc).split()) or kind
        text = f"{engine} failed: {first}" if engine else f"{first} ({kind})"
    text = " ".join(text.split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def text_stdout() -> Any:
    """stdout that never fails on a character its encoding cannot show (an ASCII or Latin-1 terminal,
    PYTHONIOENCODING=ascii): such a character is written as a backslash escape, e.g. \\u2014."""
    out = sys.stdout
    reconfigure = getattr(out, "reconfigure", None)
    if reconfigure is not None and (getattr(out, "encoding", "") or "").lower().replace("-", "") != "utf8":
        with contextlib.suppress(ValueError, OSError):  # a stream that forbids it is left as it is
            reconfigure(errors="backslashreplace")
    return out


def echo(message: str = "", *, err: bool = False) -> None:
    typer.echo(message, err=err)
    sys.stdout.flush()
