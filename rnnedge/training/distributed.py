"""Data-parallel training under torchrun: gloo on CPU, nccl on CUDA; rank 0 writes and prints."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rnnedge.errors import ConfigError, DependencyError
from rnnedge.training.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1; returns the rank info and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    info = DistInfo(rank=rank, world_size=world, local_rank=local)
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local if info.active else dev.index or 0)
        torch.cuda.set_device(dev)
    if info.active and not dist.is_initialized():
        if not dist.is_available():
            raise DependencyError("this torch build has no torch.distributed")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot join the {backend} process group (rank {rank}/{world}): {exc}") from exc
    return info, dev


def teardown(info: DistInfo) -> None:
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a small tensor over ranks (identity when not distributed)."""
    if info.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()
