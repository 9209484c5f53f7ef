"""Classic LSTM mixer: torch's fused nn.LSTM for sequences, the explicit cell (same weights) for T == 1.

    i, f, g, o = σ, σ, tanh, σ of (W_i· x + b_i· + W_h· h + b_h·)   c' = f ⊙ c + i ⊙ g   h' = o ⊙ tanh(c')
torch stores the gates [i, f, g, o]; the parallel graph exports to ONNX LSTM (gates [i, o, f, c]).
"""

from __future__ import annotations

import torch
from torch import nn

from rnnedge.models.base import Mixer, State
from rnnedge.models.spec import MixerSpec, StateSpec


class LSTM(Mixer):
    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__(d_model, ((d_hidden,), (d_hidden,)))
        self.rnn = nn.LSTM(d_model, d_hidden, batch_first=True)
        self.out = nn.Linear(d_hidden, d_model)

    def cell(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step as plain MatMul + elementwise ops. x: (B, D), h, c: (B, H) -> (h', c')."""
        r_nn = self.rnn
        gates = x @ r_nn.weight_ih_l0.t() + r_nn.bias_ih_l0 + h @ r_nn.weight_hh_l0.t() + r_nn.bias_hh_l0  # (B, 4H)
        i, f, gg, o = gates.chunk(4, dim=-1)  # (B, H) each
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)  # (B, H)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)  # (B, H)
        return h_new, c_new

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        h0, c0 = self._state_or_zeros(x, state)  # (B, H) each
        if x.shape[1] == 1:
            h, c = self.cell(x[:, 0], h0, c0)  # (B, H) each
            return self.out(h.unsqueeze(1)), (h, c)
        y, (h_n, c_n) = self.rnn(x, (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()))  # (B, T, H)
        return self.out(y), (h_n[0], c_n[0])


SPEC = MixerSpec(
    name="lstm",
    summary="classic LSTM (fused nn.LSTM for sequences, explicit cell for one token); state h and c",
    build=lambda c: LSTM(c.d_model, c.d_hidden),
    states=lambda c: (StateSpec("h", ("batch", c.d_hidden)), StateSpec("c", ("batch", c.d_hidden))),
    parallel_training=False,
    parallel_graph="ONNX LSTM op, dynamic T",
    step_cell="MatMul + Sigmoid/Tanh/Mul/Add (explicit cell, same weights)",
    weight_products=lambda c: (
        ("mixer_x", c.d_model, 4 * c.d_hidden),
        ("mixer_h", c.d_hidden, 4 * c.d_hidden),
        ("mixer_out", c.d_hidden, c.d_model),
    ),
    reference="LSTM: Hochreiter & Schmidhuber 1997 (torch's gate order [i, f, g, o])",
)
