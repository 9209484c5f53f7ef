"""The recurrent-LM protocol: any torch module `(ids [B, T], states) -> (logits [B, T, V], states)`.

A user's module takes a tuple of state tensors and returns the new tuple, in the order of the
`StateSpec`s it declares (name, full shape with the symbol "batch" anywhere, dtype, kind; the same
spec rnnedge's own mixers use, rnnedge/models/spec.py). T > 1 is the parallel form, T == 1 the step
form; both are traced from the one forward, as for rnnedge's own mixers. `ProtocolLM` wraps it into
what the exporter traces: every state batch-first (the graph contract, rnnedge/graphmeta.py; a state
torch holds as [layers, batch, hidden] is moved, not copied, on the way in and out) and named
`<layer>.<name>` (a name with no layer prefix gets `0.`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rnnedge.errors import ConfigError, GraphError
from rnnedge.graphmeta import BATCH, StateInfo, make_state
from rnnedge.models.spec import StateSpec, WeightProduct

_LAYERED = re.compile(r"^\d+\.[A-Za-z0-9_]+$")
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "int32": torch.int32}


def graph_state(spec: StateSpec) -> StateInfo:
    """The graph's view of a user state: `batch` moved first, a `<layer>.` prefix on its name."""
    if not isinstance(spec, StateSpec):
        raise ConfigError(f"states must be rnnedge StateSpec entries, got {type(spec).__name__}")
    shape = tuple(spec.shape)
    if shape.count(BATCH) != 1:
        raise ConfigError(f"state {spec.name!r}: shape {list(shape)} must hold the symbol 'batch' exactly once")
    name = spec.name if _LAYERED.match(spec.name) else f"0.{spec.name}"
    if not re.match(r"^\d+\.[A-Za-z0-9_]+$", name):
        raise ConfigError(f"state name {spec.name!r}: use letters, digits, '_' (optionally '<layer>.' first)")
    moved = (BATCH, *(d for d in shape if d != BATCH))
    try:
        return make_state(name, moved, spec.dtype, spec.kind)
    except GraphError as exc:
        raise ConfigError(str(exc)) from exc


def linear_products(module: nn.Module) -> tuple[WeightProduct, ...]:
    """The weight products one token costs, read off the module: every nn.Linear (k -> n) and each layer
    of an nn.LSTM / nn.GRU / nn.RNN (input and hidden products); embeddings are lookups, not products."""
    out: list[WeightProduct] = []
    for name, m in module.named_modules():
        label = name or "module"
        if isinstance(m, nn.Linear):
            out.append((label, m.in_features, m.out_features))
        elif isinstance(m, nn.RNNBase):
            for layer in range(m.num_layers):
                w_ih, w_hh = getattr(m, f"weight_ih_l{layer}"), getattr(m, f"weight_hh_l{layer}")
                out.append((f"{label}.ih{layer}", int(w_ih.shape[1]), int(w_ih.shape[0])))
                out.append((f"{label}.hh{layer}", int(w_hh.shape[1]), int(w_hh.shape[0])))
    return tuple(out)


@dataclass(frozen=True)
class ProtocolConfig:
    """What the exporter reads from a model's config (rnnedge's ModelConfig has the same surface)."""

    arch: str
    vocab_size: int
    states: tuple[StateInfo, ...]
    products: tuple[WeightProduct, ...]
    atol: float = 1e-4
    extra: dict[str, Any] = field(default_factory=dict)

    def state_infos(self) -> tuple[StateInfo, ...]:
        return self.states

    def weight_products(self) -> tuple[WeightProduct, ...]:
        return self.products

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "vocab_size": self.vocab_size, "byom": True, **self.extra}


class ProtocolLM(nn.Module):
    """forward(ids (B, T), state=None) -> (logits (B, T, V), state): the user's module, states batch-first."""

    def __init__(self, module: nn.Module, specs: Sequence[StateSpec], config: ProtocolConfig) -> None:
        super().__init__()
        self.module = module
        self.specs = tuple(specs)
        self.config = config
        self.batch_axes = tuple(list(s.shape).index(BATCH) for s in self.specs)

    def init_state(self, batch: int, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
        """Zero states, batch-first (graph layout)."""
        return tuple(
            torch.zeros(s.concrete_shape(batch), dtype=_TORCH_DTYPES[s.dtype], device=device)
            for s in self.config.states
        )

    def to_user(self, state: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(s.movedim(0, axis) if axis else s for s, axis in zip(state, self.batch_axes, strict=True))

    def forward(
        self, ids: torch.Tensor, state: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if state is None:
            state = self.init_state(ids.shape[0], ids.device)
        logits, new = self.module(ids, self.to_user(state))  # (B, T, V), user layout
        new = tuple(new)
        if len(new) != len(self.specs):
            raise ConfigError(f"the module returned {len(new)} state tensors; it declares {len(self.specs)}")
        return logits, tuple(s.movedim(axis, 0) if axis else s for s, axis in zip(new, self.batch_axes, strict=True))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
