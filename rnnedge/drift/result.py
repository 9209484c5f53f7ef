"""What one drift run measured: the two graphs compared, per-timestep curves, the greedy check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnedge.drift.metrics import mean_and_stderr
from rnnedge.graphmeta import StateInfo
from rnnedge.inference import GraphSession

TAIL = 0.9  # the worst state is the one with the largest error over the last 10% of t


@dataclass(frozen=True)
class ComparedGraph:
    """One side of a comparison: its variant name, file, and how it was made (from its metadata)."""

    variant: str  # "fp32", "int8-dynamic", ...
    path: str
    recipe: dict[str, Any] | None
    quantization: dict[str, Any] | None

    @classmethod
    def of(cls, graph: GraphSession) -> ComparedGraph:
        return cls(graph.info.variant, graph.source, graph.info.recipe, graph.info.quantization)

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "graph": self.path, "recipe": self.recipe, "quantization": self.quantization}


@dataclass(frozen=True)
class FreeRun:
    """Greedy generation from the same prompt with both graphs."""

    prompt: str
    steps: int
    diverged_at: int | None  # 1-based index of the first generated char that differs; None: never
    baseline_text: str
    variant_text: str


@dataclass(frozen=True, eq=False)
class DriftResult:
    """Everything one drift run measured; curves are (T, B) per step and stream, states (S, T, B).

    `states` are the floating-point states whose error is measured; `exact_states` (position counters
    and other integer states) were checked equal at every step and have no error curve.
    """

    name: str
    folder: str
    baseline: ComparedGraph
    variant: ComparedGraph
    arch: str
    config: dict[str, Any]
    states: tuple[StateInfo, ...]
    exact_states: tuple[StateInfo, ...]
    steps: int  # steps actually run (fewer than requested when the text is short)
    steps_requested: int
    streams: int
    offsets: tuple[int, ...]
    state_err: np.ndarray  # (S, T, B) accumulated relative L2 error per state tensor
    state_err_one: np.ndarray  # (S, T, B) one-step relative L2 error
    logit_err: np.ndarray  # (T, B) max |logit variant − logit baseline|
    logit_err_one: np.ndarray  # (T, B)
    kl: np.ndarray  # (T, B) KL(baseline‖variant) nats
    kl_one: np.ndarray  # (T, B)
    top1: np.ndarray  # (T, B) bool
    nll_baseline: np.ndarray  # (T, B) nats of the actual next char
    nll_variant: np.ndarray  # (T, B)
    free: FreeRun
    seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def loss_baseline(self) -> float:
        return float(self.nll_baseline.mean())

    @property
    def loss_variant(self) -> float:
        return float(self.nll_variant.mean())

    def loss_delta(self) -> tuple[float, float]:
        """(mean variant − baseline NLL in nats/char, its standard error over time blocks and streams)."""
        return mean_and_stderr(self.nll_variant - self.nll_baseline)

    @property
    def worst_index(self) -> int:
        """The state tensor with the largest accumulated error over the last 10% of t (stream mean)."""
        tail = self.state_err[:, int(self.steps * TAIL) :].mean(axis=(1, 2))  # (S,)
        return int(np.argmax(tail))

    @property
    def worst_state(self) -> np.ndarray:
        """(T,) stream-mean accumulated error of the worst state tensor (see worst_index)."""
        return self.state_err[self.worst_index].mean(axis=1)

    @property
    def worst_state_one(self) -> np.ndarray:
        """(T,) stream-mean one-step error of the same state tensor."""
        return self.state_err_one[self.worst_index].mean(axis=1)
