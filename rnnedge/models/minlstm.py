"""minLSTM (paper, section 3.2): forget and input gates read only x_t, normalised to sum to 1.

f_t = σ(Linear_f(x_t))  i_t = σ(Linear_i(x_t))  h̃_t = g(Linear_h(x_t))
f'_t = f_t / (f_t + i_t)  i'_t = i_t / (f_t + i_t)  h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ h̃_t
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnedge.models.base import Mixer, State
from rnnedge.models.fused_scan import FUSED, choose_scan, fused_decay_scan
from rnnedge.models.scan import g, linear_scan
from rnnedge.models.spec import MixerSpec, StateSpec


class MinLSTM(Mixer):
    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__(d_model, ((d_hidden,),))
        self.to_fih = nn.Linear(d_model, 3 * d_hidden)  # [k_f | k_i | k_h] in one MatMul
        self.out = nn.Linear(d_hidden, d_model)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        (h0,) = self._state_or_zeros(x, state)  # (B, H)
        k_f, k_i, k_h = self.to_fih(x).chunk(3, dim=-1)  # (B, T, H) each
        # Appendix B: diff = softplus(−k_f) − softplus(−k_i) = log i − log f, so
        # f' = σ(−diff) and i' = σ(diff) without ever dividing by f + i.
        diff = F.softplus(-k_f) - F.softplus(-k_i)  # (B, T, H)
        b = torch.sigmoid(diff) * g(k_h)  # i' ⊙ h̃   (B, T, H)
        if choose_scan(diff, self.scan_levels) == FUSED:  # CUDA training: fla-core's kernel (models/fused_scan.py)
            h = fused_decay_scan(diff, b, h0)  # f' = σ(−diff), as log f' = −softplus(diff)   (B, T, H)
        else:
            h = linear_scan(torch.sigmoid(-diff), b, h0, self.scan_levels)  # f' = σ(−diff)   (B, T, H)
        return self.out(h), (h[:, -1],)


SPEC = MixerSpec(
    name="minlstm",
    summary="minLSTM (Feng et al. 2024, §3.2): normalised gates read only x_t; parallel-scan training",
    build=lambda c: MinLSTM(c.d_model, c.d_hidden),
    states=lambda c: (StateSpec("h", ("batch", c.d_hidden)),),
    parallel_training=True,
    parallel_graph="doubling scan (Slice/Concat/Mul/Add), depth fixed by --max-seq-len",
    step_cell="MatMul + Softplus/Sigmoid/Mul/Add (the scan with T = 1)",
    weight_products=lambda c: (("mixer_x", c.d_model, 3 * c.d_hidden), ("mixer_out", c.d_hidden, c.d_model)),
    uses_scan=True,
    reference="arXiv 2410.01201 §3.2, Appendix B",
)
