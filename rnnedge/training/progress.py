"""The training progress display: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import math
import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


class TrainProgress:
    """Step, train loss, val loss and tokens/s. Silent when `enabled` is False (non-zero DDP ranks)."""

    def __init__(self, total: int, start: int, *, enabled: bool = True, log_every: int = 0) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.log_every = log_every
        self.total = total
        self._progress: Progress | None = None
        self._task = None
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  val {task.fields[val]}  {task.fields[tps]} tok/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._progress.add_task("train", total=total, completed=start, loss="-", val="-", tps="-")

    def __enter__(self) -> TrainProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, step: int, loss: float, val: float | None, tokens_per_s: float, *, evaluated: bool) -> None:
        """Report that `step` steps are done."""
        if not self.enabled:
            return
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=step, loss=_fmt(loss), val=_fmt(val), tps=f"{tokens_per_s:,.0f}"
            )
        elif evaluated or (self.log_every and step % self.log_every == 0) or step == self.total:
            print(
                f"step {step}/{self.total}  loss {_fmt(loss)}  val {_fmt(val)}  {tokens_per_s:,.0f} tok/s",
                file=sys.stderr,
                flush=True,
            )

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False)
