"""The char LM around any mixer (a plain pre-norm residual stack, as in nanoGPT's model.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from rnnedge.models.base import Mixer, State
from rnnedge.models.config import ModelConfig
from rnnedge.models.registry import mixer_spec


class Block(nn.Module):
    """norm -> mixer -> residual; norm -> MLP -> residual."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.mixer: Mixer = mixer_spec(config.arch).build(config)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, config.d_mlp), nn.GELU(), nn.Linear(config.d_mlp, config.d_model)
        )

    def forward(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        y, state = self.mixer(self.norm1(x), state)  # (B, T, D)
        x = x + y  # (B, T, D)
        x = x + self.mlp(self.norm2(x))  # (B, T, D)
        return x, state


class CharLM(nn.Module):
    """forward(idx (B, T), state=None) -> (logits (B, T, V), state).

    `state` is one flat tuple of tensors in `config.state_infos()` order (layer by layer, each
    layer's states in its MixerSpec's order, e.g. LSTM h then c), each (B, *fixed dims). None means
    the zero initial state.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layers)])
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    @property
    def n_states(self) -> int:
        return sum(len(b.mixer.state_shapes) for b in self.blocks)

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return tuple(s for b in self.blocks for s in b.mixer.init_state(batch, device))

    def forward(self, idx: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if state is not None and len(state) != self.n_states:
            raise ValueError(f"expected {self.n_states} state tensors, got {len(state)}")
        x = self.embed(idx)  # (B, T, D)
        new_state: list[torch.Tensor] = []
        pos = 0
        for block in self.blocks:
            n = len(block.mixer.state_shapes)
            layer_state = None if state is None else tuple(state[pos : pos + n])
            x, layer_new = block(x, layer_state)  # (B, T, D)
            new_state.extend(layer_new)
            pos += n
        return self.head(self.norm(x)), tuple(new_state)  # (B, T, V)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@contextlib.contextmanager
def fixed_scan_levels(model: CharLM, levels: int | None) -> Iterator[None]:
    """Within the block, every parallel scan runs exactly `levels` doubling passes (for tracing)."""
    mixers = [b.mixer for b in model.blocks]
    saved = [m.scan_levels for m in mixers]
    for m in mixers:
        m.scan_levels = levels
    try:
        yield
    finally:
        for m, s in zip(mixers, saved, strict=True):
            m.scan_levels = s


def build_model(config: ModelConfig) -> CharLM:
    """A freshly initialised CharLM for `config`."""
    return CharLM(config)
