"""Benchmark helper: run every parallel-scan mixer's recurrence as a plain loop over time instead.

Mixers whose spec says `uses_scan` (rnnedge/models/registry.py) compute their recurrence with a doubling
scan: minGRU/minLSTM with `scan.linear_scan`, Aaren with `scan.attention_scan`. Inside
`sequential_scans()` their modules call the loop over time instead (`scan.sequential_scan`,
`scan.sequential_attention`: same math, one step at a time). GRU/LSTM/Elman are already sequential;
the transformer's parallel form is attention, not a scan, so it has no loop to swap in.
Used by train_speed.py (scan vs loop) and export_bench.py (an fp64 step-by-step reference).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from unittest import mock

import torch

from rnnedge.models.fused_scan import forced_scan
from rnnedge.models.registry import MIXER_MODULES, MIXER_NAMES, mixer_spec
from rnnedge.models.scan import sequential_attention, sequential_scan


def parallel_mixers() -> tuple[str, ...]:
    """Registered mixers that train through a parallel (doubling) scan."""
    return tuple(name for name in MIXER_NAMES if mixer_spec(name).uses_scan)


def _loop(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, levels: int | None = None) -> torch.Tensor:
    return sequential_scan(a, b, h0)  # `levels` only shapes the doubling scan; a loop needs none


def _attention_loop(
    s: torch.Tensor, v: torch.Tensor, lse0: torch.Tensor, o0: torch.Tensor, levels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    return sequential_attention(s, v, lse0, o0)


@contextlib.contextmanager
def sequential_scans() -> Iterator[None]:
    """Within the block, each parallel mixer's `linear_scan` is the loop over time (and on CUDA the mixers
    take that path, not fla-core's fused kernel)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(forced_scan("doubling"))
        for name in parallel_mixers():
            module = importlib.import_module(MIXER_MODULES[name])
            swaps = {"linear_scan": _loop, "attention_scan": _attention_loop}
            found = [fn for fn in swaps if hasattr(module, fn)]
            if not found:
                raise SystemExit(f"{MIXER_MODULES[name]} uses a scan but neither linear_scan nor attention_scan")
            for fn in found:
                stack.enter_context(mock.patch.object(module, fn, swaps[fn]))
        yield
