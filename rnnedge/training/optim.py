"""AdamW with decoupled weight decay on matrices only, and its moments as named tensors for checkpoints."""

from __future__ import annotations

import torch
from torch import nn

from rnnedge.errors import CheckpointError
from rnnedge.training.config import TrainConfig

_SLOTS = ("exp_avg", "exp_avg_sq", "step")


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on tensors with >= 2 dims (matrices, embeddings), none on biases and norms."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def optimizer_tensors(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """{'<param name>.exp_avg' | '.exp_avg_sq' | '.step': tensor} for every parameter with state."""
    out: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        state = opt.state.get(p)
        if not state:
            continue
        for slot in _SLOTS:
            value = state[slot]
            out[f"{name}.{slot}"] = value if torch.is_tensor(value) else torch.tensor(float(value))
    return out


def load_optimizer_tensors(model: nn.Module, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Restore moments saved by `optimizer_tensors`; missing or mis-shaped entries raise CheckpointError."""
    for name, p in model.named_parameters():
        state = {}
        for slot in _SLOTS:
            key = f"{name}.{slot}"
            if key not in tensors:
                raise CheckpointError(f"optimizer state lacks {key}; cannot resume exactly")
            value = tensors[key]
            if slot != "step" and value.shape != p.shape:
                raise CheckpointError(
                    f"optimizer state {key} has shape {tuple(value.shape)}, expected {tuple(p.shape)}"
                )
            state[slot] = value.to(device=p.device, dtype=p.dtype if slot != "step" else torch.float32).clone()
        opt.state[p] = state
