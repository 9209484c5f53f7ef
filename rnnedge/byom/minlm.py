"""Adapter: lucidrains' minLM (PyPI mingru-pytorch 0.2.1, `minGRU_pytorch.minLM.minLM`), use_lstm False/True.

The package's own parallel form is the log-space scan (Heinsen; arXiv 2410.01201 Appendix B): ONNX has
no LogCumSumExp and in fp32 it drifts at long T. `MinLMAdapter` runs the package's weights through an
exact form instead, one forward for both graphs, like rnnedge's own minGRU (rnnedge/models/mingru.py):

    minGRU   a_t = σ(−k_gate)             b_t = σ(k_gate) · g(k_hidden)
    minLSTM  a_t = f/(f+i), f = σ(k_f)    b_t = i/(f+i) · g(k_hidden), i = σ(k_i)
    h_t = a_t ⊙ h_{t−1} + b_t             (rnnedge.models.scan.linear_scan: the doubling scan)

(the package's step form, which its `prev_hiddens` decoding runs, is exactly this cell; its log-space
form equals it in exact arithmetic). RMSNorm is written out (x · rsqrt(mean x² + eps) · w, eps =
finfo(dtype).eps as torch's default), the GELU feed-forward and the residuals are the package's modules.
The optional causal depthwise conv (`enable_conv=True`, which the package cannot decode step by step)
carries its last kernel−1 inputs as a state `<layer>.conv` [batch, kernel−1, dim], so both graphs run it.

State per layer: `<layer>.h` [batch, dim_inner] (the package's next_prev_hidden, [batch, 1, dim_inner]
there), plus `<layer>.conv` with the conv.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rnnedge.errors import ConfigError, DependencyError
from rnnedge.models.scan import g, linear_scan
from rnnedge.models.spec import StateSpec


def _rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torch.nn.RMSNorm written out (its eps None means finfo(x.dtype).eps)."""
    eps = norm.eps if norm.eps is not None else torch.finfo(x.dtype).eps
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # (B, T, D)
    return y * norm.weight if norm.weight is not None else y


class _Scan(nn.Module):
    """Holds the doubling scan's depth (set by the exporter while it traces the parallel graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.scan_levels: int | None = None


class MinLMAdapter(nn.Module):
    """forward(ids (B, T), states) -> (logits (B, T, V), states), sharing the minLM's parameters."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not all(hasattr(model, a) for a in ("token_emb", "layers", "norm", "to_logits")):
            raise ConfigError(f"{type(model).__name__} is not a minGRU_pytorch minLM")
        self.lm = model
        self.scan = _Scan()
        first = model.layers[0]
        rnn = first[2]
        self.lstm = hasattr(rnn, "to_hidden_and_f_i_gate")
        self.dim = model.token_emb.embedding_dim
        proj = (rnn.to_hidden_and_f_i_gate if self.lstm else rnn.to_hidden_and_gate).out_features
        self.inner = proj // (3 if self.lstm else 2)
        self.kernel = first[0].kernel_size if first[0] is not None else 0
        self.depth = len(model.layers)

    def state_specs(self) -> list[StateSpec]:
        """Per layer `<l>.h` [batch, dim_inner], then `<l>.conv` [batch, kernel-1, dim] with the conv."""
        out = []
        for layer in range(self.depth):
            out.append(StateSpec(f"{layer}.h", ("batch", self.inner)))
            if self.kernel > 1:
                out.append(StateSpec(f"{layer}.conv", ("batch", self.kernel - 1, self.dim)))
        return out

    def _conv(self, conv: nn.Module, x: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Causal depthwise conv over [past inputs | x], then the pointwise one. x: (B, T, D), past (B, K-1, D)."""
        xp = torch.cat([past, x], dim=1)  # (B, K-1+T, D)
        dw, pw = conv.net[0], conv.net[1]
        y = F.conv1d(xp.transpose(1, 2), dw.weight, dw.bias, groups=dw.groups)  # (B, D, T)
        y = F.linear(y.transpose(1, 2), pw.weight[:, :, 0], pw.bias)  # (B, T, D)
        return y, (xp[:, -(self.kernel - 1) :] if self.kernel > 1 else None)  # the last K-1 inputs, next call

    def _rnn(self, rnn: nn.Module, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.lstm:
            k_h, k_f, k_i = rnn.to_hidden_and_f_i_gate(x).chunk(3, dim=-1)  # (B, T, H) each
            f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)  # (B, T, H)
            a, b = f / (f + i), i / (f + i) * g(k_h)  # (B, T, H)
        else:
            k_h, k_z = rnn.to_hidden_and_gate(x).chunk(2, dim=-1)  # (B, T, H) each
            a, b = torch.sigmoid(-k_z), torch.sigmoid(k_z) * g(k_h)  # (B, T, H)
        h = linear_scan(a, b, h0, self.scan.scan_levels)  # (B, T, H)
        return rnn.to_out(h), h[:, -1]

    def forward(
        self, ids: torch.Tensor, states: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        x = self.lm.token_emb(ids)  # (B, T, D)
        per = 2 if self.kernel > 1 else 1
        new: list[torch.Tensor] = []
        for layer, (conv, norm, rnn, ff_norm, ff, _drop) in enumerate(self.lm.layers):
            h0 = states[layer * per]
            conv_state = None
            if conv is not None:
                past = states[layer * per + 1] if per == 2 else x[:, :0]  # kernel 1: no past inputs
                y, conv_state = self._conv(conv, x, past)
                x = y + x  # (B, T, D)
            out, h_last = self._rnn(rnn, _rms_norm(norm, x), h0)
            x = out + x  # (B, T, D)
            x = ff(_rms_norm(ff_norm, x)) + x  # (B, T, D)
            new.append(h_last)
            if conv_state is not None:
                new.append(conv_state)
        return self.lm.to_logits(_rms_norm(self.lm.norm, x)), tuple(new)  # (B, T, V)

    def products(self) -> tuple[tuple[str, int, int], ...]:
        """Weight products of one token (the conv's pointwise matrix included; the depthwise taps are not)."""
        gates = (3 if self.lstm else 2) * self.inner
        out: list[tuple[str, int, int]] = []
        for layer, (conv, _n, rnn, _fn, ff, _d) in enumerate(self.lm.layers):
            if conv is not None:
                out.append((f"{layer}.conv_pw", self.dim, self.dim))
            out.append((f"{layer}.rnn_x", self.dim, gates))
            if isinstance(rnn.to_out, nn.Linear):
                out.append((f"{layer}.rnn_out", self.inner, self.dim))
            out += [(f"{layer}.ff_in", self.dim, ff[0].out_features), (f"{layer}.ff_out", ff[0].out_features, self.dim)]
        return (*out, ("to_logits", self.dim, self.lm.to_logits.out_features))


def build_minlm(weights: Mapping[str, torch.Tensor]) -> nn.Module:
    """A minLM with the hyperparameters the state_dict implies (num_tokens, dim, depth, ff_mult,
    expansion, use_lstm, enable_conv + kernel), its weights loaded strictly."""
    try:
        from minGRU_pytorch.minLM import minLM
    except ImportError as exc:
        raise DependencyError("--from mingru-pytorch needs the package: pip install mingru-pytorch==0.2.1") from exc
    if "token_emb.weight" not in weights:
        raise ConfigError("not a minLM state_dict: no token_emb.weight")
    num_tokens, dim = (int(d) for d in weights["token_emb.weight"].shape)
    depth = 1 + max((int(m.group(1)) for k in weights if (m := re.match(r"layers\.(\d+)\.", k))), default=-1)
    if depth < 1:
        raise ConfigError("not a minLM state_dict: no layers.<n>.* weights")
    lstm = "layers.0.2.to_hidden_and_f_i_gate.weight" in weights
    proj = weights["layers.0.2." + ("to_hidden_and_f_i_gate" if lstm else "to_hidden_and_gate") + ".weight"]
    inner = int(proj.shape[0]) // (3 if lstm else 2)
    ff_inner = int(weights["layers.0.4.0.weight"].shape[0])
    conv = weights.get("layers.0.0.net.0.weight")
    # The package sizes layers as int(dim * factor) and projects out only when expansion != 1: factors a
    # quarter unit above the size give back exactly these sizes.
    has_out = "layers.0.2.to_out.weight" in weights
    expansion = (inner + 0.25) / dim if has_out else 1.0
    kwargs: dict[str, Any] = dict(
        num_tokens=num_tokens, dim=dim, depth=depth, ff_mult=(ff_inner + 0.25) / dim, expansion=expansion, use_lstm=lstm
    )
    if conv is not None:
        kwargs.update(enable_conv=True, conv_kernel_size=int(conv.shape[-1]))
    model = minLM(**kwargs)
    try:
        model.load_state_dict(dict(weights), strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"minLM weights do not fit the shape they imply: {str(exc).splitlines()[0][:200]}") from exc
    return model.eval()


def export_minlm(model: nn.Module | Mapping[str, torch.Tensor], *, tokenizer: Any, out: Any, **options: Any) -> Any:
    """Export a minLM (or its state_dict) with rnnedge.export; `options` go to rnnedge.export."""
    from rnnedge.byom.api import export

    lm = MinLMAdapter(model if isinstance(model, nn.Module) else build_minlm(model))
    info = {"adapter": "mingru-pytorch", "use_lstm": lm.lstm, "depth": lm.depth, "conv_kernel": lm.kernel}
    return export(
        lm,
        states=lm.state_specs(),
        tokenizer=tokenizer,
        out=out,
        arch="minlm-lstm" if lm.lstm else "minlm-gru",
        products=lm.products(),
        source={**info, **options.pop("source", {})},
        **options,
    )
