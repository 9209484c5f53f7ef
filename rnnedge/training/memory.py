"""Will a training run fit in memory? Estimated before anything is allocated (torch, meta device only).

Weights, gradients and AdamW's two moments are 4 x 4 bytes per parameter; the activations autograd keeps
for one step grow with batch x seq-len x the widths of every layer. The estimate is a floor, not a
promise: a run it lets through can still run out (the CLI then says so in one line), but a run that
needs a thousand times the memory here is refused at once, naming the options that size it, instead
of failing inside torch after minutes of work.
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path

from rnnedge.errors import ConfigError
from rnnedge.training.config import TrainConfig

BYTES_PER_PARAM = 16  # fp32 weights + gradients + AdamW exp_avg + exp_avg_sq
GIB = 1 << 30


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes a training step needs at least: parameter state and kept activations."""

    params: int
    param_bytes: int
    activation_bytes: int

    @property
    def total(self) -> int:
        return self.param_bytes + self.activation_bytes


def parameter_count(config: TrainConfig, vocab_size: int) -> int:
    """Parameters of the model `config` describes, counted on torch's meta device (no storage)."""
    from rnnedge.training.weights import implied_shapes

    shapes = implied_shapes(config.model_config(vocab_size))
    return sum(math.prod(s) for s in shapes.values())


def training_need(config: TrainConfig, vocab_size: int) -> MemoryNeed:
    """The floor estimate of one training step's memory (see the module docstring)."""
    model = config.model_config(vocab_size)
    params = parameter_count(config, vocab_size)
    per_token = model.n_layers * (6 * model.d_model + 4 * model.d_hidden + 2 * model.d_mlp) + 3 * vocab_size
    activations = 4 * config.batch_size * config.seq_len * per_token  # fp32, kept for backward
    return MemoryNeed(params, BYTES_PER_PARAM * params, activations)


def available_bytes() -> int | None:
    """Memory this process can still take: MemAvailable, and the headroom under an address-space limit
    (ulimit -v); None when neither is known."""
    limits: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[0])
            limits.append(max(0, soft - pages * os.sysconf("SC_PAGE_SIZE")))
        except (OSError, ValueError, IndexError):
            limits.append(soft)
    return min(limits) if limits else None


def check_fits(config: TrainConfig, vocab_size: int, available: int | None = None) -> MemoryNeed:
    """ConfigError (one line, naming the options) when the run's floor estimate exceeds the memory
    available here; the estimate otherwise. CPU runs only (a GPU's memory is torch's to report)."""
    need = training_need(config, vocab_size)
    free = available_bytes() if available is None else available
    if free is not None and need.total > free:
        raise ConfigError(
            f"this run needs at least {need.total / GIB:,.1f} GiB but {free / GIB:,.1f} GiB is free: "
            f"{need.params:,} parameters (--d-model {config.d_model}, --layers {config.n_layers}) take "
            f"{need.param_bytes / GIB:,.1f} GiB with gradients and AdamW state, activations of --batch-size "
            f"{config.batch_size} x --seq-len {config.seq_len} {need.activation_bytes / GIB:,.1f} GiB; "
            "make them smaller"
        )
    return need
