"""The one model config shared by all four mixers (frozen, JSON-serialisable)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rnnedge.errors import ConfigError

ARCHS = ("mingru", "minlstm", "gru", "lstm")
# States each mixer carries per layer, in the order they appear in graphs and checkpoints.
STATE_NAMES = {"mingru": ("h",), "minlstm": ("h",), "gru": ("h",), "lstm": ("h", "c")}


@dataclass(frozen=True)
class ModelConfig:
    """A char LM: embedding -> n_layers x (norm, mixer, residual; norm, MLP, residual) -> norm -> head."""

    vocab_size: int
    arch: str = "mingru"
    n_layers: int = 3
    d_model: int = 128
    expansion: float = 2.0  # recurrent width d_hidden = round(expansion * d_model)
    mlp_ratio: float = 4.0  # MLP width = round(mlp_ratio * d_model)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        for name in ("vocab_size", "n_layers", "d_model"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("expansion", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0 or round(value * self.d_model) < 1:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")

    @property
    def d_hidden(self) -> int:
        return round(self.expansion * self.d_model)

    @property
    def d_mlp(self) -> int:
        return round(self.mlp_ratio * self.d_model)

    def state_spec(self) -> list[tuple[str, int]]:
        """Flat list of (name, width) for every recurrent state, e.g. [('0.h', 256), ...]."""
        return [(f"{layer}.{n}", self.d_hidden) for layer in range(self.n_layers) for n in STATE_NAMES[self.arch]]

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
