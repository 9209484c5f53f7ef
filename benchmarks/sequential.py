"""Benchmark helper: run every parallel-scan mixer's recurrence as a plain loop over time instead.

Mixers whose spec has `parallel_training` (rnnedge/models/registry.py) compute their linear recurrence
with `scan.linear_scan`; inside `sequential_scans()` their modules call `scan.sequential_scan` (same
math, one step at a time) instead. The other mixers are already sequential and are left as they are.
Used by train_speed.py (scan vs loop) and export_bench.py (an fp64 step-by-step reference).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from unittest import mock

import torch

from rnnedge.models.registry import MIXER_MODULES, MIXER_NAMES, mixer_spec
from rnnedge.models.scan import sequential_scan


def parallel_mixers() -> tuple[str, ...]:
    """Registered mixers that train through a parallel scan."""
    return tuple(name for name in MIXER_NAMES if mixer_spec(name).parallel_training)


def _loop(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, levels: int | None = None) -> torch.Tensor:
    return sequential_scan(a, b, h0)  # `levels` only shapes the doubling scan; a loop needs none


@contextlib.contextmanager
def sequential_scans() -> Iterator[None]:
    """Within the block, each parallel mixer's `linear_scan` is the loop over time."""
    with contextlib.ExitStack() as stack:
        for name in parallel_mixers():
            module = importlib.import_module(MIXER_MODULES[name])
            if not hasattr(module, "linear_scan"):
                raise SystemExit(f"{MIXER_MODULES[name]} has no scan.linear_scan to swap for a loop")
            stack.enter_context(mock.patch.object(module, "linear_scan", _loop))
        yield
