"""Run ONNX Runtime's Python tools (quantizers, float16 and .ort converters) without their chatter on the terminal.

The tools print (`print`), log through the root logger, raise Python warnings, write C++ log lines
straight to file descriptors 1/2, and leave scratch files (sym_shape_infer_temp.onnx, *.data) in the
current directory. `tool_output(workdir)` runs them inside `workdir` with all of that captured; the
captured text is kept for an error message when a tool fails.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ToolOutput:
    """What the tools printed, logged and warned while captured."""

    text: str = ""

    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        return lines[-1][:200] if lines else ""


@contextlib.contextmanager
def _fds_to(file: io.BufferedRandom) -> Iterator[None]:
    """Point file descriptors 1 and 2 at `file` (C++ log lines bypass sys.stdout/sys.stderr)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


@contextlib.contextmanager
def tool_output(workdir: Path) -> Iterator[ToolOutput]:
    """Run the body in `workdir` with prints, logging, warnings and fd 1/2 output captured."""
    captured = ToolOutput()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    cwd = os.getcwd()
    with tempfile.TemporaryFile(dir=workdir) as fd_file, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root.handlers[:] = [handler]
        root.setLevel(logging.WARNING)
        os.chdir(workdir)
        try:
            with _fds_to(fd_file), contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                yield captured
        finally:
            os.chdir(cwd)
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)
            fd_file.seek(0)
            fd_text = fd_file.read().decode("utf-8", "replace")
            notes = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
            captured.text = buffer.getvalue() + fd_text + notes
