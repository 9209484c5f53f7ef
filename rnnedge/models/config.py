"""The one model config shared by every mixer (frozen, JSON-serialisable; torch-free)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from rnnedge.errors import ConfigError
from rnnedge.graphmeta import StateInfo, make_state
from rnnedge.models.registry import MIXER_NAMES, mixer_spec

MAX_HEADS = 1024
MAX_WINDOW = 1 << 16  # attention window (tokens): the KV cache holds this many per layer and stream
MAX_WIDTH = 1 << 26  # d_model, d_hidden, d_mlp, vocab_size: one 2**26 x 2**26 float weight is 16 PiB
MAX_LAYERS = 4096


@dataclass(frozen=True)
class ModelConfig:
    """A char LM: embedding -> n_layers x (norm, mixer, residual; norm, MLP, residual) -> norm -> head."""

    vocab_size: int
    arch: str = "mingru"
    n_layers: int = 3
    d_model: int = 128
    expansion: float = 2.0  # recurrent width d_hidden = round(expansion * d_model)
    mlp_ratio: float = 4.0  # MLP width = round(mlp_ratio * d_model)
    n_heads: int = 4  # attention mixers (transformer, aaren): heads of d_model / n_heads each
    window: int = 128  # transformer: tokens each token attends to (itself included) = KV cache length

    def __post_init__(self) -> None:
        if self.arch not in MIXER_NAMES:
            raise ConfigError(f"unknown arch {self.arch!r}; choose one of {', '.join(MIXER_NAMES)}")
        for name, top in (("vocab_size", MAX_WIDTH), ("n_layers", MAX_LAYERS), ("d_model", MAX_WIDTH)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
            if value > top:  # checked before any tensor is sized from it (torch.empty overflows at 2**63)
                raise ConfigError(
                    f"{name} {value:,} is impossible here: beyond any model rnnedge builds (at most {top:,})"
                )
        for name, top in (("n_heads", MAX_HEADS), ("window", MAX_WINDOW)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ConfigError(f"{name} must be an integer from 1 to {top}, got {value!r}")
        for name in ("expansion", "mlp_ratio"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value < math.inf
                or round(value * self.d_model) < 1
            ):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
            if round(value * self.d_model) > MAX_WIDTH:
                raise ConfigError(
                    f"{name} {value:g} x d_model {self.d_model} is impossible here: beyond any model rnnedge builds "
                    f"(at most {MAX_WIDTH:,} wide)"
                )

    @property
    def d_hidden(self) -> int:
        return round(self.expansion * self.d_model)

    @property
    def head_dim(self) -> int:
        """Width of one attention head; ConfigError when n_heads does not divide d_model (attention mixers
        read it; the RNN mixers ignore n_heads)."""
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        return self.d_model // self.n_heads

    @property
    def d_mlp(self) -> int:
        return round(self.mlp_ratio * self.d_model)

    def state_infos(self) -> tuple[StateInfo, ...]:
        """Every state tensor of the model, layer by layer in the mixer's order, e.g. '0.h' ("batch", 256).

        Read from the mixer's MixerSpec (imports the mixer module, and so torch).
        """
        spec = mixer_spec(self.arch)
        return tuple(
            make_state(f"{layer}.{s.name}", s.shape, s.dtype, s.kind)
            for layer in range(self.n_layers)
            for s in spec.states(self)
        )

    def weight_products(self) -> tuple[tuple[str, int, int], ...]:
        """(name, k, n) of every weight product one token costs: each layer's mixer (from its
        MixerSpec) and MLP, then the head. The exporter records it; the runtime floor times it."""
        spec = mixer_spec(self.arch)
        out: list[tuple[str, int, int]] = []
        for layer in range(self.n_layers):
            out += [(f"{layer}.{n}", k, m) for n, k, m in spec.weight_products(self)]
            out += [(f"{layer}.mlp_up", self.d_model, self.d_mlp), (f"{layer}.mlp_down", self.d_mlp, self.d_model)]
        out.append(("head", self.d_model, self.vocab_size))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"model config has unknown keys: {', '.join(sorted(unknown))}")
        if "vocab_size" not in data:
            raise ConfigError("model config lacks vocab_size")
        return cls(**data)
