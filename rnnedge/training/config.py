"""The run configuration (frozen, JSON-serialisable) and which of its fields a resume may change."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from rnnedge.errors import ConfigError
from rnnedge.models import MIXER_NAMES, ModelConfig

# Fields a resumed run may change; every other field must match the checkpoint's run.
RESUMABLE_CHANGES = frozenset({"steps", "eval_every", "eval_batches", "save_every", "device", "max_time", "threads"})
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d{1,3})?)$")
# The `rnnedge train` option of each field whose name is not simply --field-name.
_OPTIONS = {"n_layers": "--layers"}


def option(field: str) -> str:
    """The `rnnedge train` option that sets TrainConfig field `field` (error messages name it)."""
    return _OPTIONS.get(field, "--" + field.replace("_", "-"))


def check_device_name(name: str) -> str:
    """`name` if it is cpu, cuda or cuda:N (whether or not this machine has one); ConfigError otherwise."""
    if not isinstance(name, str) or not DEVICE_PATTERN.match(name):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    return name


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (model shape, optimisation, schedule, evaluation)."""

    arch: str = "mingru"
    n_layers: int = 3
    d_model: int = 128
    expansion: float = 2.0
    mlp_ratio: float = 4.0
    seq_len: int = 256
    batch_size: int = 32
    steps: int = 2000
    lr: float = 3e-3
    min_lr: float | None = None  # end of the cosine decay; None = lr / 10
    warmup: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    eval_every: int = 250
    eval_batches: int = 16  # val loss over up to eval_batches * batch_size * seq_len val characters
    save_every: int = 0  # checkpoint every N steps; 0 = at every evaluation
    seed: int = 1337
    device: str = "cpu"
    max_time: float | None = None  # stop after this many seconds of training (the schedule follows time)
    threads: int | None = None  # torch CPU threads per process; None = torch's default

    def __post_init__(self) -> None:
        if self.arch not in MIXER_NAMES:
            raise ConfigError(f"unknown arch {self.arch!r}; choose one of {', '.join(MIXER_NAMES)}")
        positive = ("n_layers", "d_model", "seq_len", "batch_size", "steps", "eval_every", "eval_batches")
        for name in positive:
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ConfigError(f"{option(name)} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("warmup", "save_every", "seed"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"{option(name)} must be a non-negative integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr!r}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"--min-lr must be in [0, lr], got {self.min_lr!r}")
        for name in ("weight_decay", "grad_clip"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{option(name)} must be >= 0, got {getattr(self, name)!r}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError("beta1 and beta2 must be in [0, 1)")
        check_device_name(self.device)
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigError(f"--max-time must be positive, got {self.max_time!r}")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise ConfigError(f"--threads must be a positive integer (torch CPU threads), got {self.threads!r}")
        self.model_config(vocab_size=1)  # validates expansion and mlp_ratio

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(
            vocab_size=vocab_size,
            arch=self.arch,
            n_layers=self.n_layers,
            d_model=self.d_model,
            expansion=self.expansion,
            mlp_ratio=self.mlp_ratio,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError("training config must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"training config has unknown keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def check_resume(saved: TrainConfig, requested: TrainConfig) -> None:
    """Raise ConfigError naming every field that differs and may not change on resume."""
    bad = [
        f"{f.name} (checkpoint {getattr(saved, f.name)!r}, requested {getattr(requested, f.name)!r})"
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(requested, f.name)
    ]
    if bad:
        raise ConfigError(
            "cannot resume: the run config differs from the checkpoint's in " + "; ".join(bad) + " "
            "(leave these options out to keep the checkpoint's values)"
        )


def lr_at(config: TrainConfig, step: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to final_lr at the end of the run.

    With a time budget the decay follows whichever is further along: steps or elapsed time.
    """
    if config.warmup and step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    span = max(1, config.steps - config.warmup)
    progress = min(1.0, max((step - config.warmup) / span, time_fraction))
    return config.final_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (config.lr - config.final_lr)
