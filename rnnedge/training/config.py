"""The run configuration (frozen, JSON-serialisable) and which of its fields a resume may change."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from rnnedge.errors import ConfigError
from rnnedge.models import MIXER_NAMES, ModelConfig, mixer_spec

# Fields a resumed run may change; every other field must match the checkpoint's run.
RESUMABLE_CHANGES = frozenset({"steps", "eval_every", "eval_batches", "save_every", "device", "max_time", "threads"})
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d{1,3})?)$")
# The `rnnedge train` option of each field whose name is not simply --field-name.
_OPTIONS = {"n_layers": "--layers", "n_heads": "--heads"}
# Model fields only some mixers read (attention heads, the attention window); see `mixer_reads`.
MIXER_OPTIONAL_FIELDS = ("n_heads", "window")
DEFAULT_WINDOW = 128


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
    n_heads: int = 4  # attention mixers: heads of d_model / n_heads each
    # transformer: tokens each token attends to (= its KV cache length), at most seq_len; None = the
    # smaller of DEFAULT_WINDOW and seq_len
    window: int | None = None
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
        positive = ("n_layers", "d_model", "n_heads", "seq_len", "batch_size", "steps", "eval_every", "eval_batches")
        for name in positive:
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ConfigError(f"{option(name)} must be a positive integer, got {getattr(self, name)!r}")
        if self.window is not None and (not _is_int(self.window) or self.window < 1):
            raise ConfigError(f"--window must be a positive integer, got {self.window!r}")
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
        model = self.model_config(vocab_size=1)  # validates expansion, mlp_ratio, n_heads and window
        if mixer_reads(self.arch, "n_heads") and self.d_model % self.n_heads:
            raise ConfigError(f"--d-model {self.d_model} is not divisible by --heads {self.n_heads} ({self.arch})")
        if mixer_reads(self.arch, "window") and model.window > self.seq_len:
            raise ConfigError(
                f"--window {model.window} exceeds --seq-len {self.seq_len}: {self.arch} would attend up to "
                f"{model.window} tokens back at inference but never more than {self.seq_len} in training; "
                f"pass --window {self.seq_len} or less (or a longer --seq-len)"
            )

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
            n_heads=self.n_heads,
            window=self.attention_window,
        )

    @property
    def attention_window(self) -> int:
        """The window the model gets: `window`, or the smaller of DEFAULT_WINDOW and seq_len."""
        return min(DEFAULT_WINDOW, self.seq_len) if self.window is None else self.window

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


@cache
def mixer_reads(arch: str, field: str) -> bool:
    """Whether mixer `arch` reads ModelConfig field `field` (one of MIXER_OPTIONAL_FIELDS).

    Derived from its MixerSpec, not from a list of names: a mixer reads a field iff its state shapes
    or its weight products change when the field does (the transformer reads n_heads and window,
    Aaren n_heads, the RNN mixers neither). Imports the mixer's module (torch).
    """
    if field not in MIXER_OPTIONAL_FIELDS:
        raise ConfigError(f"{field!r} is not one of {', '.join(MIXER_OPTIONAL_FIELDS)}")
    spec = mixer_spec(arch)
    a, b = (ModelConfig(vocab_size=1, arch=arch, d_model=8, **{field: value}) for value in (1, 2))
    return spec.states(a) != spec.states(b) or spec.weight_products(a) != spec.weight_products(b)


def check_fields_apply(arch: str, given: Iterable[str]) -> None:
    """ConfigError (one line) when an option the mixer does not read was given, e.g. --heads for an LSTM."""
    for field in MIXER_OPTIONAL_FIELDS:
        if field in given and not mixer_reads(arch, field):
            users = [name for name in MIXER_NAMES if mixer_reads(name, field)]
            raise ConfigError(
                f"{option(field)} does not apply to {arch}: only {', '.join(users)} read it; leave it out"
            )


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
