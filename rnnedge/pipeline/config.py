"""What `rnnedge pipeline` runs, and the checks made before any stage starts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rnnedge.errors import CheckpointError, ConfigError, RnnedgeError
from rnnedge.io import check_writable
from rnnedge.threads import default_threads
from rnnedge.training.presets import size_preset
from rnnedge.vocab import CharVocab


@dataclass(frozen=True)
class PipelineConfig:
    """ckpt: a checkpoint folder, or "default" for the bundled model. With no ckpt: train on `data` if
    given, else use the bundled model. `data` also supplies the held-out text (its last 10%) and, for
    recipes that calibrate, the calibration text (the first 90%, never overlapping the held-out part).
    `method` is a precision recipe (rnnedge.quantization.recipes: int8-dynamic, int8-qdq, fp16, ...).
    `preset` sizes the model trained first (`rnnedge train --preset`); `threads` applies to every stage.
    """

    out: str
    ckpt: str | None = None
    data: str | None = None
    arch: str = "mingru"
    train_steps: int = 300
    method: str = "int8-dynamic"
    drift_steps: int = 2048
    drift_streams: int = 8
    prompt: str = "ROMEO:"
    tokens: int = 300
    temperature: float = 0.8
    seed: int = 0
    threads: int = field(default_factory=default_threads)  # every stage: torch and ONNX Runtime
    preset: str | None = None  # training: a size preset of `rnnedge train --preset` (small, medium, large)
    overwrite: bool = False  # write into a folder rnnedge cannot prove it wrote (rnnedge/ownership.py)

    def __post_init__(self) -> None:
        for name, flag in (
            ("drift_steps", "--drift-steps"),
            ("drift_streams", "--streams"),
            ("train_steps", "--train-steps"),
            ("threads", "--threads"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{flag} must be a positive integer, got {value!r}")
        if self.drift_steps < 16:
            raise ConfigError(f"--drift-steps must be at least 16, got {self.drift_steps}")
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 0:
            raise ConfigError(f"--tokens must be >= 0, got {self.tokens!r}")
        if not self.temperature >= 0:
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature!r}")
        if not self.prompt:
            raise ConfigError("--prompt must not be empty")
        if not self.out:
            raise ConfigError("--out must name a folder")
        if self.preset is not None:
            size_preset(self.preset)  # ConfigError naming the presets


def checkpoint_vocab(ckpt: Path) -> CharVocab:
    """The vocabulary a checkpoint folder records (its config.json), read without torch or the weights."""
    path = ckpt / "config.json"
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {ckpt}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return CharVocab(meta["vocab"])
    except FileNotFoundError as exc:
        raise CheckpointError(f"{ckpt} is not a checkpoint folder (no config.json)") from exc
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{path} is not a readable rnnedge checkpoint config: {str(exc)[:200]}") from exc


def probe_writable(out: Path) -> None:
    """RnnedgeError unless `out` is (or can become) a folder we can write into; creates nothing lasting."""
    if out.exists() and not out.is_dir():
        raise RnnedgeError(f"--out {out} exists and is not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RnnedgeError(f"cannot create --out {out}: {existing} is not a folder")
    check_writable(out / "summary.json", "--out")  # the probe rnnedge.io uses for every output
