"""Checkpoints: DIR/model.safetensors + DIR/config.json. Never a pickle.

config.json = {"format": "rnnedge-checkpoint", "format_version": 1, "rnnedge_version",
"model": ModelConfig, "vocab": chars, "weights_sha256", "val_loss", "training": {...}}.
An optional DIR/optimizer.safetensors holds AdamW moments for resuming.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rnnedge import __version__
from rnnedge.errors import CheckpointError, ConfigError, RnnedgeError
from rnnedge.io import read_json, write_bytes, write_json
from rnnedge.models import CharLM, ModelConfig, build_model
from rnnedge.vocab import CharVocab

FORMAT = "rnnedge-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
OPTIMIZER = "optimizer.safetensors"


@dataclass
class Checkpoint:
    model: CharLM
    vocab: CharVocab
    path: Path
    val_loss: float | None = None
    training: dict[str, Any] = field(default_factory=dict)
    optimizer_tensors: dict[str, torch.Tensor] | None = None


def save_checkpoint(
    out_dir: str | os.PathLike[str],
    model: CharLM,
    vocab: CharVocab,
    *,
    val_loss: float | None = None,
    training: dict[str, Any] | None = None,
    optimizer_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the checkpoint atomically (each file via temp + rename; config.json last)."""
    out = Path(out_dir)
    weights = st_save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    if optimizer_tensors is not None:
        write_bytes(out / OPTIMIZER, st_save({k: v.detach().cpu().contiguous() for k, v in optimizer_tensors.items()}))
    write_bytes(out / WEIGHTS, weights)
    write_json(
        out / CONFIG,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "rnnedge_version": __version__,
            "model": model.config.to_dict(),
            "vocab": vocab.chars,
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "val_loss": val_loss,
            "training": training or {},
        },
    )
    return out


def _read_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        return st_load(path.read_bytes())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{what} not found: {path}") from exc
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{what} {path} is corrupt or truncated: {exc}") from exc


def load_checkpoint(path: str | os.PathLike[str], *, with_optimizer: bool = False) -> Checkpoint:
    """Load and validate a checkpoint folder; every problem is one CheckpointError line."""
    ckpt = Path(path)
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {ckpt}")
    try:
        meta = read_json(ckpt / CONFIG, "checkpoint config")
    except RnnedgeError as exc:
        raise CheckpointError(str(exc)) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{ckpt / CONFIG} is not an rnnedge checkpoint config")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{ckpt}: unsupported checkpoint format_version {meta.get('format_version')!r}")
    try:
        config = ModelConfig.from_dict(meta.get("model"))
        vocab = CharVocab(meta.get("vocab") or "")
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{ckpt / CONFIG}: {exc}") from exc
    if len(vocab) != config.vocab_size:
        raise CheckpointError(f"{ckpt}: vocab has {len(vocab)} characters but the model expects {config.vocab_size}")
    raw = (ckpt / WEIGHTS).read_bytes() if (ckpt / WEIGHTS).is_file() else None
    if raw is None:
        raise CheckpointError(f"checkpoint weights not found: {ckpt / WEIGHTS}")
    expected = meta.get("weights_sha256")
    if expected and hashlib.sha256(raw).hexdigest() != expected:
        raise CheckpointError(f"{ckpt / WEIGHTS} does not match its config (checksum differs): corrupt or replaced")
    tensors = _read_safetensors(ckpt / WEIGHTS, "checkpoint weights")
    model = build_model(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"{ckpt}: weights do not match a {config.arch} model "
            f"(missing {missing[:3]}, unexpected {extra[:3]}; {len(missing)} missing, {len(extra)} unexpected in all)"
        )
    for name, tensor in tensors.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(
                f"{ckpt}: weight {name} has shape {tuple(tensor.shape)}, config implies {tuple(own[name].shape)}"
            )
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{ckpt}: weight {name} holds NaN or infinite values")
    model.load_state_dict(tensors)
    model.eval()
    opt = None
    if with_optimizer and (ckpt / OPTIMIZER).is_file():
        opt = _read_safetensors(ckpt / OPTIMIZER, "optimizer state")
    val_loss = meta.get("val_loss")
    return Checkpoint(
        model=model,
        vocab=vocab,
        path=ckpt,
        val_loss=float(val_loss) if isinstance(val_loss, (int, float)) else None,
        training=meta.get("training") or {},
        optimizer_tensors=opt,
    )
