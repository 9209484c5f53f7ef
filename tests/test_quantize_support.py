"""Shared helpers for the quantization tests: tiny exported model folders (no tests here)."""

from __future__ import annotations

from pathlib import Path

import torch

from rnnedge.exporter import export_model
from rnnedge.models import ModelConfig, build_model
from rnnedge.training.checkpoint import save_checkpoint
from rnnedge.vocab import CharVocab
from tests.conftest import TEXT


def make_export(
    out: Path,
    arch: str = "mingru",
    d_model: int = 32,
    n_layers: int = 2,
    seed: int = 0,
    train_steps: int = 12,
    head_outlier: float = 0.0,
    ort_format: bool = False,
) -> Path:
    """A tiny model (briefly fitted to TEXT so losses mean something) exported into `out`.

    `head_outlier` > 0 adds that multiple of the head's largest weight to one input column of the head,
    for every output: every logit moves by the same amount, so the fp32 model's probabilities do not
    change, but a per-tensor int8 scale now rounds the rest of the head to a few levels. The head is
    then by far the most quantization-sensitive node, whatever the ONNX Runtime version (a known answer).
    """
    vocab = CharVocab.from_text(TEXT + "xyzXYZ!")
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=len(vocab), arch=arch, n_layers=n_layers, d_model=d_model)
    model = build_model(cfg)
    ids = torch.tensor(vocab.encode(TEXT))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(train_steps):
        starts = torch.randint(0, len(ids) - 33, (8,))
        batch = torch.stack([ids[s : s + 33] for s in starts.tolist()])
        logits, _ = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    if head_outlier:
        with torch.no_grad():
            model.head.weight[:, 0] += head_outlier * model.head.weight.abs().max()
    ckpt = out.parent / f"{out.name}-ckpt"
    save_checkpoint(ckpt, model, vocab)
    export_model(ckpt, out, max_seq_len=128, verify=False, ort_format=ort_format)
    return out
