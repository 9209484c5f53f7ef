"""Classic GRU mixer: torch's fused nn.GRU for sequences, the explicit cell (same weights) for T == 1.

    r = σ(W_ir x + b_ir + W_hr h + b_hr)   z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))   h' = (1 − z) ⊙ n + z ⊙ h
torch stores the gates [r, z, n]; the parallel graph exports to ONNX GRU (linear_before_reset = 1).
"""

from __future__ import annotations

import torch
from torch import nn

from rnnedge.models.base import OneStateCell
from rnnedge.models.spec import MixerSpec, StateSpec


class GRU(OneStateCell):
    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__(d_model, ((d_hidden,),))
        self.rnn = nn.GRU(d_model, d_hidden, batch_first=True)
        self.out = nn.Linear(d_hidden, d_model)

    def cell(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step as plain MatMul + elementwise ops. x: (B, D), h: (B, H) -> (B, H)."""
        r_nn = self.rnn
        gi = x @ r_nn.weight_ih_l0.t() + r_nn.bias_ih_l0  # (B, 3H)
        gh = h @ r_nn.weight_hh_l0.t() + r_nn.bias_hh_l0  # (B, 3H)
        i_r, i_z, i_n = gi.chunk(3, dim=-1)  # (B, H) each
        h_r, h_z, h_n = gh.chunk(3, dim=-1)  # (B, H) each
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h  # (B, H)


SPEC = MixerSpec(
    name="gru",
    summary="classic GRU (fused nn.GRU for sequences, explicit cell for one token)",
    build=lambda c: GRU(c.d_model, c.d_hidden),
    states=lambda c: (StateSpec("h", ("batch", c.d_hidden)),),
    parallel_training=False,
    parallel_graph="ONNX GRU op (linear_before_reset = 1), dynamic T",
    step_cell="MatMul + Sigmoid/Tanh/Mul/Add (explicit cell, same weights)",
    weight_products=lambda c: (
        ("mixer_x", c.d_model, 3 * c.d_hidden),
        ("mixer_h", c.d_hidden, 3 * c.d_hidden),
        ("mixer_out", c.d_hidden, c.d_model),
    ),
    reference="GRU: Cho et al. 2014 (torch's gate order [r, z, n])",
)
