"""Mean loss (nats/char) and bits/char of a model on a text, in chunks with carried state."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from rnnedge.errors import ConfigError
from rnnedge.models import CharLM
from rnnedge.training.checkpoint import Checkpoint, load_checkpoint
from rnnedge.training.device import resolve_device
from rnnedge.vocab import OnUnknown


@torch.no_grad()
def stream_nll(
    model: CharLM, ids: torch.Tensor, chunk_len: int, progress: Callable[[int, int], None] | None = None
) -> tuple[float, int]:
    """Summed next-char NLL (nats) and count over S parallel streams ids (S, L), state carried over chunks;
    `progress(done, total)` after each chunk (positions scored, of L-1)."""
    if chunk_len < 1:
        raise ConfigError(f"chunk_len must be positive, got {chunk_len}")
    device = next(model.parameters()).device
    ids = ids.to(device)  # (S, L)
    state = None
    total = 0.0
    count = 0
    for start in range(0, ids.shape[1] - 1, chunk_len):
        x = ids[:, start : start + chunk_len]  # (S, C)
        y = ids[:, start + 1 : start + 1 + chunk_len]  # (S, C')
        x = x[:, : y.shape[1]]  # (S, C')
        logits, state = model(x, state)  # (S, C', V)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum")
        total += float(nll)
        count += y.numel()
        if progress is not None:
            progress(start + y.shape[1], ids.shape[1] - 1)
    return total, count


def loss_dict(total: float, count: int) -> dict[str, Any]:
    loss = total / count
    return {"loss_nats": loss, "bits_per_char": loss / math.log(2), "chars": count}


def evaluate_checkpoint(
    ckpt: str | os.PathLike[str] | Checkpoint,
    text: str,
    *,
    chunk_len: int = 1024,
    on_unknown: OnUnknown = "error",
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Loss of a checkpoint on `text`: dict(loss_nats, bits_per_char, chars), chars = predictions made.

    The text is read as one stream from the zero state; any length fits in memory. An unusable
    `device` (no CUDA, unknown name) is one line before the checkpoint is loaded.
    """
    torch_device = resolve_device(device)
    if not isinstance(ckpt, Checkpoint):
        ckpt = load_checkpoint(ckpt)
    ids = torch.from_numpy(ckpt.vocab.encode(text, on_unknown=on_unknown))  # (N,)
    if len(ids) < 2:
        raise ConfigError("the evaluation text needs at least 2 known characters")
    model = ckpt.model.to(torch_device).eval()
    total, count = stream_nll(model, ids.unsqueeze(0), chunk_len, progress)
    return loss_dict(total, count)
