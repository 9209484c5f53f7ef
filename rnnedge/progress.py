"""Progress of long commands (bench, quantize, compare, eval): a bar on a terminal, a line per stage otherwise.

    with Stages("bench", total=6) as stages:
        stages.start("fp32: step latency, batch 1")   # terminal: the bar's label; else one stderr line
        ...
        stages.start("fp32: step latency, batch 8")   # the previous stage counts as done

On a terminal (stderr) the bar is rich's, as `rnnedge train` has, drawn on stderr and gone when the
command ends. Elsewhere (pipes, CI, log files) each stage is one line on stdout, like the stage lines
of compare, drift and pipeline: `bench [2/6] fp32: step latency, batch 8`. stderr then carries only
errors (a refused run is still exactly one stderr line). rich is imported only for the bar, so
this module costs nothing on a device without it. Torch-, onnx- and ORT-free.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default stderr) is an interactive terminal."""
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


_OPEN: list[Stages] = []  # bars drawn now; `close_all` stops them before an error line is printed


def close_all() -> None:
    """Stop every bar still drawn (the CLI calls this before printing an error or 'interrupted')."""
    for stages in list(_OPEN):
        stages.close()


class Stages:
    """A command's stages. `total` may be None (unknown: the bar shows elapsed time only).

    `bar`: force the bar (True) or lines (False); default: the bar when stderr is a terminal.
    `lines=False` prints nothing without the bar (for commands that log a line per stage themselves, or
    whose stdout is JSON). `stream`: where the bar (default stderr) or the lines (default stdout) go."""

    def __init__(
        self,
        command: str,
        total: int | None = None,
        *,
        bar: bool | None = None,
        lines: bool = True,
        stream: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.command = command
        self.total = total
        self.stream = stream
        self.enabled = enabled
        self.use_bar = enabled and (on_terminal(stream or sys.stderr) if bar is None else bar)
        self.lines = enabled and lines and not self.use_bar
        self.done = 0
        self.started = 0
        self.t0 = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None
        self._closed = False

    def __enter__(self) -> Stages:
        self._open_bar()
        return self

    def _open_bar(self) -> None:
        """Start drawing the bar (on `with`, or at the first stage of a Stages used without `with`)."""
        if self.use_bar and self._progress is None and not self._closed:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(file=self.stream or sys.stderr, force_terminal=True)
            self._progress = Progress(
                TextColumn(f"[bold]{self.command}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=self.total)
            _OPEN.append(self)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def plan(self, total: int) -> None:
        """Set (or change) how many stages there are."""
        self.total = total
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def start(self, name: str) -> None:
        """Begin the next stage (the one before it counts as done)."""
        if not self.enabled or self._closed:
            return
        self._open_bar()
        if self.started > self.done:
            self.done += 1
        self.started += 1
        of = f"/{self.total}" if self.total else ""
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, description=name)
        elif self.lines:
            print(f"{self.command} [{self.started}{of}] {name}", file=self.stream or sys.stdout, flush=True)

    def fraction(self, done: int, total: int) -> None:
        """Progress within the current stage (`done` of `total` units); shown by the bar only."""
        if self._progress is not None and total > 0:
            self._progress.update(self._task, completed=self.done + min(1.0, done / total))

    def say(self, message: str) -> None:
        """A command's own log line: printed to stdout (above the bar, which it also labels, on a terminal).

        Commands that already log a line per stage (quantize, compare) pass this as their `log`."""
        if self._progress is not None:
            self._progress.update(self._task, description=message.strip()[:80])
            self._progress.console.print(message, highlight=False, markup=False, soft_wrap=True)
        else:
            print(message, flush=True)

    def close(self) -> None:
        """Stop the bar (it disappears); idempotent. A closed Stages prints nothing more."""
        self._closed = True
        if self._progress is not None:
            self._progress.update(self._task, completed=self.started)
            self._progress.stop()
            self._progress = None
        if self in _OPEN:
            _OPEN.remove(self)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def stage(stages: Stages | None, name: str) -> None:
    """`stages.start(name)` when there is a Stages (library functions take `stages=None`)."""
    if stages is not None:
        stages.start(name)


def plan(stages: Stages | None, total: int) -> None:
    """`stages.plan(total)` when there is a Stages."""
    if stages is not None:
        stages.plan(total)
