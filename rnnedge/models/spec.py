"""What a mixer says about itself (torch-free): name, states of any rank, parallel form, step cell, floor.

Each mixer module (`rnnedge/models/<name>.py`) ends with one `SPEC = MixerSpec(...)` next to its math;
`rnnedge/models/registry.py` lists the modules. Everything else — config validation, the LM, the
exporter's names and shapes, the runtime floor, CLI help, tests and benchmarks — reads the spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rnnedge.models.config import ModelConfig


@dataclass(frozen=True)
class StateSpec:
    """One per-layer state: its short name ('h', 'c', 'k', 'pos'), full shape with the symbol 'batch'
    first, dtype and kind (recurrent | kv | position)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"
    kind: str = "recurrent"


# A weight product of one token: (name, k, n) for a (k -> n) matrix; the runtime floor times these.
WeightProduct = tuple[str, int, int]


@dataclass(frozen=True)
class MixerSpec:
    """A mixer's self-description. `build(config)` returns the torch module (see models/base.py)."""

    name: str
    summary: str  # one line for CLI help and the README
    build: Callable[[ModelConfig], Any]  # config -> Mixer (torch nn.Module)
    states: Callable[[ModelConfig], tuple[StateSpec, ...]]  # per layer, in graph order
    parallel_training: bool  # True: T > 1 runs a parallel scan; False: a recurrence over t
    parallel_graph: str  # how parallel.onnx computes the sequence, e.g. "doubling scan", "ONNX RNN op"
    step_cell: str  # how step.onnx writes one token, e.g. "MatMul + Sigmoid/Mul/Add"
    weight_products: Callable[[ModelConfig], tuple[WeightProduct, ...]]  # the mixer's, per token
    uses_scan: bool = False  # parallel graph depth fixed at export by the doubling scan's levels
    atol: float = 1e-4  # export verification tolerance (max abs difference)
    reference: str = ""  # paper section or source of the math
