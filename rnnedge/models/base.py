"""What every mixer shares: an explicit state tuple and one forward for both paths."""

from __future__ import annotations

import torch
from torch import nn

from rnnedge.errors import InputError

State = tuple[torch.Tensor, ...]


class Mixer(nn.Module):
    """A sequence layer (B, T, d_model) -> (B, T, d_model) with an explicit state.

    `forward(x, state=None) -> (y, state)`; state is a tuple of tensors of shape (B, *per_stream)
    for each entry of `state_shapes` (the mixer's MixerSpec declares the same shapes), zeros when
    None. The parallel graph and the step graph are two traces of this same forward: T > 1 runs the
    parallel form, T == 1 the cell.
    """

    def __init__(self, d_model: int, state_shapes: tuple[tuple[int, ...], ...]) -> None:
        super().__init__()
        self.d_model = d_model
        self.state_shapes = state_shapes
        # Doubling passes of the parallel scan (scan mixers only); None derives them from T.
        self.scan_levels: int | None = None

    def init_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> State:
        return tuple(torch.zeros(batch, *shape, device=device, dtype=dtype) for shape in self.state_shapes)

    def _state_or_zeros(self, x: torch.Tensor, state: State | None) -> State:
        if state is None:
            return self.init_state(x.shape[0], x.device, x.dtype)
        if len(state) != len(self.state_shapes):
            raise ValueError(f"expected {len(self.state_shapes)} state tensors, got {len(state)}")
        for i, (s, shape) in enumerate(zip(state, self.state_shapes, strict=True)):
            if tuple(s.shape[1:]) != shape:
                raise InputError(
                    f"{type(self).__name__} state {i} has shape {list(s.shape)}, expected {['batch', *shape]} "
                    "(a state from another architecture or size?)"
                )
        return tuple(state)


class OneStateCell(Mixer):
    """A classic cell with one state h (GRU, Elman): torch's fused module `self.rnn` over a sequence,
    the subclass's explicit `cell(x, h)` (the same weights, plain MatMul + elementwise) for one token."""

    rnn: nn.Module
    out: nn.Module

    def cell(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        (h0,) = self._state_or_zeros(x, state)  # (B, H)
        if x.shape[1] == 1:
            h = self.cell(x[:, 0], h0)  # (B, H)
            return self.out(h.unsqueeze(1)), (h,)
        y, h_n = self.rnn(x, h0.unsqueeze(0).contiguous())  # (B, T, H), (1, B, H)
        return self.out(y), (h_n[0],)
