"""What every mixer shares: an explicit state tuple and one forward for both paths."""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, ...]


class Mixer(nn.Module):
    """A recurrent layer (B, T, d_model) -> (B, T, d_model) with an explicit state.

    `forward(x, state=None) -> (y, state)`; state is a tuple of (B, d_hidden) tensors named by
    `state_names`, zeros when None. The parallel graph and the step graph are two traces of this
    same forward: T > 1 runs the parallel form, T == 1 the cell.
    """

    state_names: tuple[str, ...] = ("h",)

    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_hidden = d_hidden
        # Doubling passes of the parallel scan; None derives them from T (see scan.linear_scan).
        self.scan_levels: int | None = None

    def init_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> State:
        return tuple(torch.zeros(batch, self.d_hidden, device=device, dtype=dtype) for _ in self.state_names)

    def _state_or_zeros(self, x: torch.Tensor, state: State | None) -> State:
        if state is None:
            return self.init_state(x.shape[0], x.device, x.dtype)
        if len(state) != len(self.state_names):
            raise ValueError(f"expected {len(self.state_names)} state tensors, got {len(state)}")
        return tuple(state)
