"""Checkpoints: DIR/model.safetensors + DIR/config.json. Never a pickle.

config.json = {"format": "rnnedge-checkpoint", "format_version": 1, "rnnedge_version",
"model": ModelConfig, "vocab": chars, "weights_sha256", "optimizer_sha256", "val_loss", "training": {...}}.
An optional DIR/optimizer.safetensors holds AdamW moments for resuming; `optimizer_sha256` ties it to
this config (null: saved without one). Loading checks the weights' checksum, then the config's shapes
against the weights' header (rnnedge/training/weights.py) before any module or tensor is allocated.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rnnedge import __version__
from rnnedge.commit import commit_with_ledger as commit_checkpoint
from rnnedge.commit import member
from rnnedge.errors import CheckpointError, ConfigError, RnnedgeError, WriteError
from rnnedge.io import read_json, read_regular
from rnnedge.models import CharLM, ModelConfig, build_model
from rnnedge.training.weights import check_weights_header, parse_weights_header
from rnnedge.vocab import CharVocab

FORMAT = "rnnedge-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
OPTIMIZER = "optimizer.safetensors"
CHECKPOINT_FILES = (WEIGHTS, OPTIMIZER, CONFIG)


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
    """Write the checkpoint as one unit (rnnedge/commit.py: a staging folder, one rename, then the
    moves, config.json last) and record it in the folder's ledger (rnnedge/ownership.py). A failed
    write (full disk) replaces nothing and is one CheckpointError line; a SIGKILL anywhere leaves the
    old or the new checkpoint, never a mix."""
    out = Path(out_dir)
    weights = st_save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    optimizer = None
    if optimizer_tensors is not None:
        optimizer = st_save({k: v.detach().cpu().contiguous() for k, v in optimizer_tensors.items()})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rnnedge_version": __version__,
        "model": model.config.to_dict(),
        "vocab": vocab.chars,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "optimizer_sha256": hashlib.sha256(optimizer).hexdigest() if optimizer is not None else None,
        "val_loss": val_loss,
        "training": training or {},
    }
    files = {WEIGHTS: weights, **({OPTIMIZER: optimizer} if optimizer is not None else {})}
    files[CONFIG] = (json.dumps(meta, indent=2, ensure_ascii=True) + "\n").encode("utf-8")
    try:
        commit_checkpoint(out, files)
    except (WriteError, OSError) as exc:
        reason = exc.reason if isinstance(exc, WriteError) else (exc.strerror or str(exc))
        raise CheckpointError(f"cannot write the checkpoint to {out}: {reason} (no partial file left)") from None
    return out


MAX_FILE_BYTES = 64 << 30  # larger than any checkpoint file rnnedge writes


def _read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes, after checking it is a regular file of a sane size (never /dev/zero or a FIFO)."""
    try:
        return read_regular(path, MAX_FILE_BYTES, what)
    except RnnedgeError as exc:
        raise CheckpointError(str(exc)) from None
    except FileNotFoundError as exc:
        raise CheckpointError(f"{what} not found: {path}") from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _load_safetensors(raw: bytes, path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        return st_load(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{what} {path} is corrupt or truncated: {exc}") from exc


def _optimizer(ckpt: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The saved AdamW moments, or None. A config that records `optimizer_sha256` vouches for exactly
    one optimizer file: a stale or replaced one is refused, not silently mixed in (older checkpoints
    without the key load their optimizer file unchecked, as before)."""
    path = member(ckpt, OPTIMIZER)
    if "optimizer_sha256" in meta and meta["optimizer_sha256"] is None:
        return None  # saved without optimizer state; a file there belongs to another save
    if not path.is_file():
        return None
    raw = _read_bytes(path, "optimizer state")
    expected = meta.get("optimizer_sha256")
    if expected and hashlib.sha256(raw).hexdigest() != expected:
        raise CheckpointError(f"{path} does not belong to {ckpt / CONFIG} (checksum differs): cannot resume exactly")
    return _load_safetensors(raw, path, "optimizer state")


@dataclass(frozen=True)
class ResumePoint:
    """Where a saved run stopped, read from config.json's `training` (a hand-editable file: checked)."""

    steps_done: int
    tokens_seen: int
    train_time_s: float
    history: list[dict[str, Any]]


MAX_COUNT = 1 << 62  # steps or tokens beyond this are no run's count


def resume_point(training: dict[str, Any], where: str | os.PathLike[str]) -> ResumePoint:
    """The saved run's counters, or one CheckpointError naming the field that is not a sane value
    (a string, a negative or non-integral count, infinity, a history that is not a list of records)."""

    def count(name: str) -> int:
        value = training.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CheckpointError(f"{where}: training.{name} is {value!r}, not a count; cannot resume")
        if value < 0 or value != int(value) or value > MAX_COUNT:
            raise CheckpointError(f"{where}: training.{name} is {value!r}, not a count; cannot resume")
        return int(value)

    seconds = training.get("train_time_s", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise CheckpointError(f"{where}: training.train_time_s is {seconds!r}, not a duration; cannot resume")
    history = training.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise CheckpointError(f"{where}: training.history is not a list of records; cannot resume")
    return ResumePoint(count("steps_done"), count("tokens_seen"), float(seconds), list(history))


def load_checkpoint(path: str | os.PathLike[str], *, with_optimizer: bool = False) -> Checkpoint:
    """Load and validate a checkpoint folder; every problem is one CheckpointError line."""
    ckpt = Path(path)
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {ckpt}")
    try:
        meta = read_json(member(ckpt, CONFIG), "checkpoint config")
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
    raw = _read_bytes(member(ckpt, WEIGHTS), "checkpoint weights")
    expected = meta.get("weights_sha256")
    if expected and hashlib.sha256(raw).hexdigest() != expected:
        raise CheckpointError(f"{ckpt / WEIGHTS} does not match its config (checksum differs): corrupt or replaced")
    # The config's shapes against the file's header before any tensor or module is allocated.
    check_weights_header(config, parse_weights_header(raw, ckpt / WEIGHTS), ckpt)
    tensors = _load_safetensors(raw, ckpt / WEIGHTS, "checkpoint weights")
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{ckpt}: weight {name} holds NaN or infinite values")
    model = build_model(config)
    model.load_state_dict(tensors)
    model.eval()
    opt = _optimizer(ckpt, meta) if with_optimizer else None
    val_loss = meta.get("val_loss")
    training = meta.get("training") or {}
    if not isinstance(training, dict):
        raise CheckpointError(f"{ckpt / CONFIG}: training is not a JSON object")
    return Checkpoint(
        model=model,
        vocab=vocab,
        path=ckpt,
        val_loss=float(val_loss) if isinstance(val_loss, (int, float)) else None,
        training=training,
        optimizer_tensors=opt,
    )
