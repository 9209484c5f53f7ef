"""What a comparison measures and how long it runs (frozen, validated), and the paper's figures."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rnnedge.errors import ConfigError
from rnnedge.graphmeta import FP32, check_variant_name

HELD_OUT_FRACTION = 0.1  # the text's last 10% is held out (as rnnedge.training.data.VAL_FRACTION)
STATE_T = tuple(1 << i for i in range(17))  # t = 1, 2, 4, ... 65,536: the state-bytes curve
MIN_DRIFT_STEPS = 16  # rnnedge.drift.run.MIN_STEPS

# "Were RNNs All We Needed?" (Feng et al. 2024, arXiv 2410.01201), its Shakespeare language-modelling
# figures (test loss, nats/char). Their models and training budgets are not ours: side by side only.
PAPER_NATS: dict[str, float] = {"mingru": 1.548, "minlstm": 1.555, "transformer": 1.547}
PAPER: dict[str, Any] = {
    "source": "Feng et al. 2024, 'Were RNNs All We Needed?', arXiv 2410.01201 (Shakespeare, test loss)",
    "note": "the paper's models, sizes and training budgets, not the ones compared here",
    "nats_per_char": PAPER_NATS,
}


def _positive_ints(name: str, values: Any, lowest: int = 1) -> tuple[int, ...]:
    if not isinstance(values, tuple) or not values:
        raise ConfigError(f"{name} must be a non-empty list of integers, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < lowest:
            raise ConfigError(f"{name} must hold integers >= {lowest}, got {v!r}")
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class CompareSettings:
    """One comparison's knobs (`rnnedge compare` options); every model is measured the same way."""

    variant: str = "int8-dynamic"  # the precision variant compared with fp32 (a recipe name)
    eval_chars: int | None = None  # score only the first N held-out characters; None: all of them
    positions: tuple[int, ...] = (1, 256, 1024, 4096)  # step latency of the t-th token of a stream
    latency_samples: int = 200  # timed steps per position and precision
    lengths: tuple[int, ...] = (512, 4096)  # parallel-graph tokens/s at these sequence lengths
    drift_steps: int = 1024
    drift_streams: int = 4
    drift_gen_steps: int = 200  # greedy characters of drift's free-running check
    stream_tokens: int = 4096  # tokens a streaming session runs while its peak resident memory is read
    max_seq_len: int = 4096  # parallel-graph scan depth of the exports made from checkpoints
    threads: int = 1  # ONNX Runtime intra-op threads everywhere
    on_unknown: str = "error"  # held-out characters outside the vocabulary: error | skip

    def __post_init__(self) -> None:
        if check_variant_name(self.variant) == FP32:
            raise ConfigError("--variant must name a precision variant to compare with fp32, not fp32 itself")
        object.__setattr__(self, "positions", _positive_ints("--positions", self.positions))
        object.__setattr__(self, "lengths", _positive_ints("--lengths", self.lengths))
        ints = {
            "--latency-samples": (self.latency_samples, 1),
            "--drift-steps": (self.drift_steps, MIN_DRIFT_STEPS),
            "--drift-streams": (self.drift_streams, 1),
            "--drift-gen-steps": (self.drift_gen_steps, 1),
            "--stream-tokens": (self.stream_tokens, 1),
            "--max-seq-len": (self.max_seq_len, 2),
            "--threads": (self.threads, 1),
        }
        if self.eval_chars is not None:
            ints["--eval-chars"] = (self.eval_chars, 2)
        for name, (value, lowest) in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ConfigError(f"{name} must be an integer >= {lowest}, got {value!r}")
        if self.on_unknown not in ("error", "skip"):
            raise ConfigError(f"--on-unknown must be error or skip, not {self.on_unknown!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def held_out(text: str) -> tuple[str, str]:
    """(first 90%, last 10%) of `text`: the split `rnnedge train` trains and validates on."""
    n_val = int(len(text) * HELD_OUT_FRACTION)
    return text[: len(text) - n_val], text[len(text) - n_val :]
