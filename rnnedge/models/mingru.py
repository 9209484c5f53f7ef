"""minGRU (paper, section 3.1): gates read only x_t.

z_t = σ(Linear_z(x_t))    h̃_t = g(Linear_h(x_t))    h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t
"""

from __future__ import annotations

import torch
from torch import nn

from rnnedge.models.base import Mixer, State
from rnnedge.models.fused_scan import FUSED, choose_scan, fused_decay_scan
from rnnedge.models.scan import g, linear_scan
from rnnedge.models.spec import MixerSpec, StateSpec


class MinGRU(Mixer):
    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__(d_model, ((d_hidden,),))
        self.to_zh = nn.Linear(d_model, 2 * d_hidden)  # [k_z | k_h] in one MatMul
        self.out = nn.Linear(d_hidden, d_model)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        (h0,) = self._state_or_zeros(x, state)  # (B, H)
        k_z, k_h = self.to_zh(x).chunk(2, dim=-1)  # (B, T, H) each
        # 1 − z = σ(−k) and z = σ(k): the linear-space form of Appendix B's −softplus(±k).
        b = torch.sigmoid(k_z) * g(k_h)  # (B, T, H)
        if choose_scan(k_z, self.scan_levels) == FUSED:  # CUDA training: fla-core's kernel (models/fused_scan.py)
            h = fused_decay_scan(k_z, b, h0)  # a = σ(−k_z), as log a = −softplus(k_z)   (B, T, H)
        else:
            h = linear_scan(torch.sigmoid(-k_z), b, h0, self.scan_levels)  # a = σ(−k_z)   (B, T, H)
        return self.out(h), (h[:, -1],)


SPEC = MixerSpec(
    name="mingru",
    summary="minGRU (Feng et al. 2024, §3.1): gates read only x_t; parallel-scan training",
    build=lambda c: MinGRU(c.d_model, c.d_hidden),
    states=lambda c: (StateSpec("h", ("batch", c.d_hidden)),),
    parallel_training=True,
    parallel_graph="doubling scan (Slice/Concat/Mul/Add), depth fixed by --max-seq-len",
    step_cell="MatMul + Sigmoid/Mul/Add (the scan with T = 1)",
    weight_products=lambda c: (("mixer_x", c.d_model, 2 * c.d_hidden), ("mixer_out", c.d_hidden, c.d_model)),
    uses_scan=True,
    reference="arXiv 2410.01201 §3.1, Appendix B",
)
