"""A user's state_dict from a file: safetensors, or a `.pt` / `.pth` loaded with weights_only=True (never
an arbitrary pickle). Every failure is one CheckpointError line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from rnnedge.errors import CheckpointError


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """{name: tensor} from FILE.safetensors or FILE.pt/.pth/.bin (a state_dict, or {'state_dict': ...} /
    {'model': ...} around one), on CPU."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{p} is not a readable safetensors file: {str(exc).splitlines()[0][:200]}") from exc
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError / EOFError for damaged or unsafe files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(
            f"{p} does not load with torch.load(weights_only=True) (only a plain state_dict is accepted, "
            f"never an arbitrary pickle): {first}"
        ) from exc
    return _state_dict(obj, p)


def _state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} holds no state_dict (a mapping of names to tensors)")
    out = {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not out:
        raise CheckpointError(f"{path} holds no tensors")
    return out
