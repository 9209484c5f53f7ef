"""Aaren (Feng et al. 2024, "Attention as an RNN", arXiv 2405.13956): attention as a many-to-many RNN.

Each head has one learned query q (§3: input-independent), so its score for token i is
s_i = q·k_i / √head_dim with k_i, v_i projections of x_i, and its output at t is the softmax average of
v over every token so far: o_t = Σ_{i≤t} e^{s_i} v_i / Σ_{i≤t} e^{s_i}. That is a prefix scan with the
associative (max, denominator, numerator) combine of §3, run by the same doubling scan as minGRU
(`rnnedge.models.scan.attention_scan`): T > 1 is the parallel scan, T == 1 the one-token cell.

State per layer (constant size): lse [batch, heads] = log Σ e^{s_i} and o [batch, heads, head_dim] =
the attention output so far, i.e. the paper's (m, u, w) as m + log u and w / u. Every real value is a
valid state (u > 0 is implied), so random or quantized states never divide by zero, and the carried
prefix enters the scan as one element (score lse, value o). The zero state is therefore not empty: it
is one null token with score 0 and value 0 that every prefix includes (an attention sink), which is
what training starts from too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnedge.models.base import Mixer, State
from rnnedge.models.scan import attention_scan
from rnnedge.models.spec import MixerSpec, StateSpec


class Aaren(Mixer):
    def __init__(self, d_model: int, n_heads: int, head_dim: int) -> None:
        super().__init__(d_model, ((n_heads,), (n_heads, head_dim)))
        self.n_heads, self.head_dim = n_heads, head_dim
        self.to_kv = nn.Linear(d_model, 2 * n_heads * head_dim)  # [keys | values] in one MatMul
        self.query = nn.Parameter(torch.randn(n_heads, head_dim))  # one learned query per head
        self.out = nn.Linear(n_heads * head_dim, d_model)
        self.scale = 1.0 / math.sqrt(head_dim)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        lse0, o0 = self._state_or_zeros(x, state)  # (B, H), (B, H, F)
        batch, time = x.shape[0], x.shape[1]
        kv = self.to_kv(x).view(batch, time, 2, self.n_heads, self.head_dim)  # (B, T, 2, H, F)
        k, v = kv[:, :, 0], kv[:, :, 1]  # (B, T, H, F) each
        s = (k * self.query).sum(-1) * self.scale  # (B, T, H)
        o, lse = attention_scan(s, v, lse0, o0, self.scan_levels)  # (B, T, H, F), (B, T, H)
        y = self.out(o.reshape(batch, time, self.n_heads * self.head_dim))  # (B, T, D)
        return y, (lse[:, -1], o[:, -1])


SPEC = MixerSpec(
    name="aaren",
    summary="Aaren (Feng et al. 2024): attention with a learned query per head as an RNN; parallel-scan training",
    build=lambda c: Aaren(c.d_model, c.n_heads, c.head_dim),
    states=lambda c: (
        StateSpec("lse", ("batch", c.n_heads)),
        StateSpec("o", ("batch", c.n_heads, c.head_dim)),
    ),
    parallel_training=True,
    parallel_graph="doubling scan of the (max, sum, weighted sum) combine (Slice/Concat/Max/Exp/Mul/Add)",
    step_cell="MatMul + Max/Exp/Mul/Add/Div/Log (the scan with T = 1)",
    weight_products=lambda c: (("mixer_kv", c.d_model, 2 * c.d_model), ("mixer_out", c.d_model, c.d_model)),
    uses_scan=True,
    reference="arXiv 2405.13956 §3 (many-to-many attention by a prefix scan; Aaren)",
)
