"""The scan math: h_t = a_t * h_{t-1} + b_t, the linear recurrence minGRU and minLSTM reduce to.

Paper, section 3: both minimal cells are h_t = a_t ⊙ h_{t-1} + b_t with a_t ∈ (0, 1) and gates that
read only x_t, so the whole sequence can be computed with a parallel scan.

We train and export with `linear_scan`, a Hillis-Steele (doubling) scan: `levels` passes, pass k
combining each position with the one 2^k steps back. It uses only Pad, Slice, Mul and Add, so it
exports with any ONNX exporter and runs on ONNX Runtime and TensorRT; the decay products only ever
shrink (a ∈ (0, 1)), so nothing overflows and a far contribution that underflows to 0 really is
negligible. Its fp32 error stays ~1e-6 at T = 65,536.

`attention_scan` runs the same doubling scan over Aaren's softmax-attention combine (running max,
denominator, numerator; arXiv 2405.13956 §3); `sequential_attention` is its loop.

The paper's log-space scan (Appendix B, after Heinsen 2023) is kept as `logspace_scan` for
comparison: in fp32 it loses ~1e-3 at T = 2048 because exp(a* + logcumsumexp(log b − a*)) adds two
large numbers of opposite sign, and ONNX has no LogCumSumExp. `sequential_scan` is the plain loop.
"""

from __future__ import annotations

import math

import torch


def scan_levels(seq_len: int) -> int:
    """Doubling passes needed for a sequence of `seq_len` steps: ceil(log2(seq_len))."""
    return 0 if seq_len <= 1 else math.ceil(math.log2(seq_len))


def _shift(x: torch.Tensor, steps: int, fill: float) -> torch.Tensor:
    """x shifted `steps` positions later in time (dim 1), the first min(steps, T) filled with `fill`.

    The fill block is as long as x[:, :steps] and x[:, :-steps] is empty once steps >= T, so each pass
    costs O(T) even in a graph traced with more passes than T needs; constant Slice bounds, so any T
    exports (Slice, ConstantOfShape, Concat).
    """
    head = x[:, :steps]  # (B, min(steps, T), H)
    return torch.cat([torch.full_like(head, fill), x[:, :-steps]], dim=1)  # (B, T, H)


def linear_scan(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, levels: int | None = None
) -> torch.Tensor:
    """All h_t of h_t = a_t * h_{t-1} + b_t. a, b: (B, T, H); h0: (B, H) or None (zeros).

    `levels` fixes the number of doubling passes (the graph then holds for T <= 2**levels);
    None derives it from T.
    """
    if h0 is not None:
        b = torch.cat([b[:, :1] + a[:, :1] * h0.unsqueeze(1), b[:, 1:]], dim=1)  # (B, T, H)
    if levels is None:
        levels = scan_levels(b.shape[1])
    for k in range(levels):
        step = 1 << k
        b = b + a * _shift(b, step, 0.0)  # h over a window of 2^(k+1) steps      # (B, T, H)
        if k + 1 < levels:
            a = a * _shift(a, step, 1.0)  # decay over the same window            # (B, T, H)
    return b


def sequential_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Reference: the recurrence as a loop over time (paper, section 3, sequential form)."""
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0  # (B, H)
    out = []
    # unbind, not a[:, t]: indexing makes autograd build a full (B, T, H) gradient per step (O(T²)).
    for a_t, b_t in zip(a.unbind(1), b.unbind(1), strict=True):
        h = a_t * h + b_t  # (B, H)
        out.append(h)
    return torch.stack(out, dim=1)  # (B, T, H)


def logspace_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """`attention_scan` runs the same doubling scan over Aaren's softmax-attention combine (running max,
    denominator, numerator; arXiv 2405.13956 §3); `sequential_attention` is its loop.

    The paper's log-space scan (Appendix B): h = exp(a* + logcumsumexp(log b − a*)), a* = cumsum(log a).

        h0 must be positive (or None): it enters as log h0 at an extra leading step.
    """
    if h0 is not None:
        log_a = torch.cat([torch.zeros_like(log_a[:, :1]), log_a], dim=1)  # (B, 1+T, H)
        log_b = torch.cat([torch.log(h0).unsqueeze(1), log_b], dim=1)  # (B, 1+T, H)
    a_star = torch.cumsum(log_a, dim=1)  # (B, T, H)
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))  # (B, T, H)
    return h if h0 is None else h[:, 1:]


def g(x: torch.Tensor) -> torch.Tensor:
    """Paper's g: x + 0.5 for x >= 0, sigmoid(x) otherwise; keeps the candidate state positive."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def attention_combine(
    m_a: torch.Tensor, u_a: torch.Tensor, w_a: torch.Tensor, m_b: torch.Tensor, u_b: torch.Tensor, w_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Aaren's associative combine (arXiv 2405.13956 §3): (m_a, u_a, w_a) ⊕ (m_b, u_b, w_b), a before b.

    m: (..., H) running max of the scores, u: (..., H) Σ e^(s − m), w: (..., H, F) Σ e^(s − m)·v.
    Both exponents are ≤ 0, so nothing overflows.
    """
    m = torch.maximum(m_a, m_b)  # (..., H)
    scale_a, scale_b = torch.exp(m_a - m), torch.exp(m_b - m)  # (..., H) each
    u = u_a * scale_a + u_b * scale_b  # (..., H)
    w = w_a * scale_a.unsqueeze(-1) + w_b * scale_b.unsqueeze(-1)  # (..., H, F)
    return m, u, w


def attention_scan(
    s: torch.Tensor, v: torch.Tensor, lse0: torch.Tensor, o0: torch.Tensor, levels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of every prefix, after a carried prefix (lse0, o0): the many-to-many Aaren output.

    s: (B, T, H) scores, v: (B, T, H, F) values; the prefix enters as one more element before t = 0
    with score lse0 (B, H) (its log-sum-exp) and value o0 (B, H, F) (its attention output). Returns
    (o, lse): o_t (B, T, H, F) = Σ_{i≤t} e^{s_i} v_i / Σ_{i≤t} e^{s_i} and lse_t (B, T, H) = log Σ_{i≤t} e^{s_i},
    both over the prefix too. Same doubling scan as `linear_scan` (Slice/Concat; `levels` passes, None
    derives them from T); an element with no partner 2^k steps back is combined with (its own max, 0, 0),
    which leaves it unchanged, so no -inf fill is needed.
    """
    m_first, u_first, w_first = attention_combine(
        lse0, torch.ones_like(lse0), o0, s[:, 0], torch.ones_like(lse0), v[:, 0]
    )
    m = torch.cat([m_first.unsqueeze(1), s[:, 1:]], dim=1)  # (B, T, H)
    u = torch.cat([u_first.unsqueeze(1), torch.ones_like(s[:, 1:])], dim=1)  # (B, T, H)
    w = torch.cat([w_first.unsqueeze(1), v[:, 1:]], dim=1)  # (B, T, H, F)
    if levels is None:
        levels = scan_levels(s.shape[1])
    for k in range(levels):
        step = 1 << k
        m_back = torch.cat([m[:, :step], m[:, :-step]], dim=1)  # (B, T, H): own max where none is 2^k back
        m, u, w = attention_combine(m_back, _shift(u, step, 0.0), _shift(w, step, 0.0), m, u, w)
    return w / u.unsqueeze(-1), m + torch.log(u)  # (B, T, H, F), (B, T, H)


def sequential_attention(
    s: torch.Tensor, v: torch.Tensor, lse0: torch.Tensor, o0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for `attention_scan`: the paper's many-to-one RNN (m, u, w) run over t, output at every t."""
    m, u, w = lse0, torch.ones_like(lse0), o0  # (B, H), (B, H), (B, H, F)
    outs, lses = [], []
    for s_t, v_t in zip(s.unbind(1), v.unbind(1), strict=True):
        m_t = torch.maximum(m, s_t)  # (B, H)
        u = u * torch.exp(m - m_t) + torch.exp(s_t - m_t)  # (B, H)
        w = w * torch.exp(m - m_t).unsqueeze(-1) + torch.exp(s_t - m_t).unsqueeze(-1) * v_t  # (B, H, F)
        m = m_t
        outs.append(w / u.unsqueeze(-1))
        lses.append(m + torch.log(u))
    return torch.stack(outs, dim=1), torch.stack(lses, dim=1)  # (B, T, H, F), (B, T, H)
