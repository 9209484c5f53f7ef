"""Named model sizes for `rnnedge train --preset NAME`: ≈0.5M, ≈5M and ≈20M parameters.

Each preset is a frozen set of TrainConfig fields: the model shape (chosen so a minGRU on
tiny-shakespeare's 65-character vocabulary lands within ±10% of the target) and the training window
and learning rate that go with that size. Other mixers at the same shape have other counts (a GRU's
mixer has three gate products with a recurrent matrix each, an LSTM's four): `param_counts` says how
many for every registered mixer. Explicit options given with the preset override its values.

    small    3 x 128, recurrent width 256, MLP 256    513,089 params (minGRU) - the bundled model's shape
    medium   8 x 256, recurrent width 512, MLP 512    5,301,313       (minGRU)
    large    8 x 512, recurrent width 1024, MLP 1024  21,088,321      (minGRU)

This module imports torch only inside `param_count` (CLI help lists the names without it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rnnedge.errors import ConfigError
from rnnedge.models.registry import MIXER_NAMES

TARGET_ARCH = "mingru"  # the mixer each preset's target parameter count is met for
TARGET_VOCAB = 65  # tiny-shakespeare's characters
TOLERANCE = 0.10  # a preset's minGRU count is within ±10% of its target


@dataclass(frozen=True)
class SizePreset:
    """A model size: its shape, the training window and learning rate for it, and its target count."""

    name: str
    target_params: int
    n_layers: int
    d_model: int
    expansion: float
    mlp_ratio: float
    seq_len: int
    batch_size: int
    lr: float
    warmup: int

    def fields(self) -> dict[str, Any]:
        """The TrainConfig fields this preset sets (every field but its name and target)."""
        out = dataclasses.asdict(self)
        del out["name"], out["target_params"]
        return out


PRESETS: dict[str, SizePreset] = {
    p.name: p
    for p in (
        # The bundled default model's shape and run settings (docs/training.md).
        SizePreset("small", 500_000, 3, 128, 2.0, 2.0, seq_len=128, batch_size=32, lr=3e-3, warmup=50),
        SizePreset("medium", 5_000_000, 8, 256, 2.0, 2.0, seq_len=256, batch_size=32, lr=2e-3, warmup=100),
        SizePreset("large", 20_000_000, 8, 512, 2.0, 2.0, seq_len=256, batch_size=64, lr=1e-3, warmup=200),
    )
}
PRESET_HELP = ", ".join(f"{p.name} (≈{p.target_params / 1e6:g}M)" for p in PRESETS.values())


def size_preset(name: str) -> SizePreset:
    """The preset called `name`; ConfigError naming the presets for anything else."""
    if name not in PRESETS:
        raise ConfigError(f"unknown --preset {name!r}; choose one of {PRESET_HELP}")
    return PRESETS[name]


def param_count(preset: SizePreset, arch: str = TARGET_ARCH, vocab_size: int = TARGET_VOCAB) -> int:
    """Parameters of a CharLM of `arch` at this preset's shape (built on torch's meta device: no memory)."""
    import torch

    from rnnedge.models import ModelConfig, build_model

    config = ModelConfig(
        vocab_size=vocab_size,
        arch=arch,
        n_layers=preset.n_layers,
        d_model=preset.d_model,
        expansion=preset.expansion,
        mlp_ratio=preset.mlp_ratio,
    )
    with torch.device("meta"):
        return build_model(config).num_params()


def param_counts(vocab_size: int = TARGET_VOCAB) -> dict[str, dict[str, int]]:
    """{preset: {mixer: parameters}} for every preset and every registered mixer."""
    return {name: {arch: param_count(p, arch, vocab_size) for arch in MIXER_NAMES} for name, p in PRESETS.items()}
