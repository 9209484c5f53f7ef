"""Elman RNN mixer, the "plain RNN": h_t = tanh(W x_t + b_W + U h_{t−1} + b_U).

The recurrence is non-linear in h (tanh of a sum that includes U h_{t−1}), so unlike minGRU/minLSTM
it has no associative combine and cannot use the parallel scan: training runs torch's fused nn.RNN
over t, and the parallel graph exports it as the ONNX RNN op (dynamic T). The step graph writes the
cell as MatMul + Add + Tanh with the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnedge.models.base import OneStateCell
from rnnedge.models.spec import MixerSpec, StateSpec


class Elman(OneStateCell):
    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__(d_model, ((d_hidden,),))
        self.rnn = nn.RNN(d_model, d_hidden, nonlinearity="tanh", batch_first=True)
        self.out = nn.Linear(d_hidden, d_model)

    def cell(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step as plain MatMul + Add + Tanh. x: (B, D), h: (B, H) -> (B, H)."""
        r_nn = self.rnn
        pre = x @ r_nn.weight_ih_l0.t() + r_nn.bias_ih_l0 + h @ r_nn.weight_hh_l0.t() + r_nn.bias_hh_l0  # (B, H)
        return torch.tanh(pre)  # (B, H)


SPEC = MixerSpec(
    name="elman",
    summary="Elman RNN, h = tanh(W x + U h + b): no parallel scan (the recurrence is non-linear)",
    build=lambda c: Elman(c.d_model, c.d_hidden),
    states=lambda c: (StateSpec("h", ("batch", c.d_hidden)),),
    parallel_training=False,
    parallel_graph="ONNX RNN op (tanh), dynamic T",
    step_cell="MatMul + Add + Tanh (explicit cell, same weights)",
    weight_products=lambda c: (
        ("mixer_x", c.d_model, c.d_hidden),
        ("mixer_h", c.d_hidden, c.d_hidden),
        ("mixer_out", c.d_hidden, c.d_model),
    ),
    reference="Elman 1990, 'Finding structure in time'",
)
