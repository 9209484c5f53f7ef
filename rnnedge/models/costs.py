"""Parameters and multiply-accumulates (MACs) per token of a CharLM, counted from the model itself.

Parameters: every tensor of `model.parameters()`, grouped by where it sits (embedding, mixers, MLPs,
norms, head).

MACs per token, two parts:
- weights: each parameter matrix (2 or more dims) except the embedding table is applied once per
  token as a matrix-vector product (nn.Linear, the fused nn.GRU/LSTM/RNN weight_ih/weight_hh, Aaren's
  learned query dotted with each key), so it costs one MAC per weight; vectors (biases, LayerNorm)
  and the embedding lookup cost none. For every mixer this equals its MixerSpec weight products plus
  the MLPs and the head (`ModelConfig.weight_products`), plus Aaren's query (H·head_dim per layer),
  which is an elementwise dot, not a MatMul, so the floor does not list it;
- cache: attention over a KV cache reads each cached element once per token (q·k over every key
  slot, the softmax weights times every value slot), so it costs one MAC per element of every
  "kv" state: 2·heads·window·head_dim per layer for the sliding-window transformer, whatever t is,
  because its step graph always runs over the whole ring buffer (empty slots are masked, not skipped).
Softmax, gates, norms and other elementwise work are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rnnedge.models.config import ModelConfig
from rnnedge.models.lm import CharLM, build_model

PARTS = ("embedding", "mixers", "mlps", "norms", "head")


@dataclass(frozen=True)
class ModelCosts:
    """What one model costs: parameters (total and by part) and MACs per token (weights and KV cache)."""

    arch: str
    params: int
    params_by_part: dict[str, int]  # PARTS -> parameters
    mixer_params_per_layer: int
    macs_weights: int  # per token: one per weight of every parameter matrix but the embedding
    macs_cache: int  # per token: one per element of every "kv" state (attention reads its whole cache)

    @property
    def macs_per_token(self) -> int:
        return self.macs_weights + self.macs_cache

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "params": self.params,
            "params_by_part": dict(self.params_by_part),
            "mixer_params_per_layer": self.mixer_params_per_layer,
            "macs_per_token": self.macs_per_token,
            "macs_weights": self.macs_weights,
            "macs_cache": self.macs_cache,
        }


def _part(name: str) -> str:
    """The PARTS entry of a parameter named as in CharLM.named_parameters()."""
    if name.startswith("embed."):
        return "embedding"
    if name.startswith("head."):
        return "head"
    if ".mixer." in name:
        return "mixers"
    if ".mlp." in name:
        return "mlps"
    return "norms"  # blocks.<i>.norm1/norm2 and the final norm


def cache_macs(config: ModelConfig) -> int:
    """MACs per token of reading the KV cache: one per element of every "kv" state (all layers)."""
    return sum(s.elements_per_stream for s in config.state_infos() if s.kind == "kv")


def count_costs(model: CharLM) -> ModelCosts:
    """Parameters and MACs per token of `model` (see the module doc for what is counted)."""
    by_part = dict.fromkeys(PARTS, 0)
    macs = 0
    for name, p in model.named_parameters():
        by_part[_part(name)] += p.numel()
        if p.dim() >= 2 and not name.startswith("embed."):
            macs += p.numel()
    mixers = [b.mixer for b in model.blocks]
    per_layer = {sum(p.numel() for p in m.parameters()) for m in mixers}
    if len(per_layer) != 1:
        raise ValueError(f"layers of one model have different mixer sizes: {sorted(per_layer)}")
    return ModelCosts(
        arch=model.config.arch,
        params=sum(by_part.values()),
        params_by_part=by_part,
        mixer_params_per_layer=per_layer.pop(),
        macs_weights=macs,
        macs_cache=cache_macs(model.config),
    )


def config_costs(config: ModelConfig) -> ModelCosts:
    """The costs of a model with `config`, built on torch's meta device (no memory allocated)."""
    with torch.device("meta"):
        model = build_model(config)
    return count_costs(model)
