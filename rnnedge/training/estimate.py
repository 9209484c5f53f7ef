"""How long a training run will take, measured up front on this machine (torch).

Two optimiser steps of the real model are timed on a few windows of random ids (the first warms up,
the second is timed); the time of one step scales with the windows per step, so a full step is
extrapolated from them. Used by `rnnedge pipeline` to say how long its training stage will take
before it starts it (and how to make it shorter).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rnnedge.models import build_model
from rnnedge.training.config import TrainConfig

PROBE_WINDOWS = 2  # windows per timed probe step (a full step has config.batch_size)


@dataclass(frozen=True)
class TrainEstimate:
    """Seconds per optimiser step and for the whole run, and the parameter count, on this machine."""

    step_s: float
    total_s: float
    params: int
    tokens_per_s: float

    def describe(self, config: TrainConfig) -> str:
        minutes = self.total_s / 60
        took = f"{minutes:.1f} min" if minutes >= 1 else f"{self.total_s:.0f} s"
        threads = config.threads or torch.get_num_threads()
        return (
            f"training {config.steps} steps of the {config.arch} model ({self.params:,} params, "
            f"batch {config.batch_size} x {config.seq_len}, {threads} thread(s)) takes about {took} here "
            f"({self.tokens_per_s:,.0f} tokens/s, measured)"
        )


def estimate_training(config: TrainConfig, vocab_size: int) -> TrainEstimate:
    """Time two probe steps of `config`'s model on this CPU and extrapolate to `config.steps` steps."""
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(0)
        model = build_model(config.model_config(vocab_size)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
        windows = min(PROBE_WINDOWS, config.batch_size)
        ids = torch.randint(0, vocab_size, (windows, config.seq_len + 1))  # (b, T+1)
        seconds = 0.0
        for probe in range(2):
            t0 = time.perf_counter()
            logits, _ = model(ids[:, :-1])  # (b, T, V)
            loss = F.cross_entropy(logits.reshape(-1, vocab_size), ids[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if probe == 1:
                seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads_before)
    step_s = seconds * config.batch_size / windows
    tokens_per_s = config.batch_size * config.seq_len / max(step_s, 1e-9)
    return TrainEstimate(step_s, step_s * config.steps, model.num_params(), tokens_per_s)
