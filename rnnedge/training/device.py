"""Which torch device a run may use, checked before any work (one line for anything else)."""

from __future__ import annotations

import torch

from rnnedge.errors import ConfigError, DependencyError
from rnnedge.training.config import check_device_name


def resolve_device(name: str) -> torch.device:
    """The torch device for cpu / cuda / cuda:N on this machine; DependencyError when torch sees no
    CUDA device, ConfigError for an index this machine lacks."""
    check_device_name(name)
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DependencyError(
            f"--device {name} was requested but torch {torch.__version__} sees no CUDA device; use --device cpu"
        )
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
