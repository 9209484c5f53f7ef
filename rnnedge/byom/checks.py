"""What a user's module must satisfy before anything is traced: finite weights, the states it declares,
logits over the tokenizer, and a step form that agrees with its parallel form. Each failure is one line."""

from __future__ import annotations

import copy

import numpy as np
import torch

from rnnedge.byom.protocol import ProtocolLM
from rnnedge.errors import ConfigError, VerificationError

CHECK_T = 24  # tokens of the torch step-vs-parallel check (the exporter's ONNX checks go to 1000)


def check_finite(lm: ProtocolLM) -> None:
    """ConfigError naming the first parameter or buffer holding NaN or inf."""
    for name, t in [*lm.module.named_parameters(), *lm.module.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ConfigError(f"weight {name} holds {bad} NaN/inf value(s); refusing to export (nothing written)")


def _random_state(lm: ProtocolLM, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    out = []
    for s in lm.config.states:
        shape = s.concrete_shape(batch)
        if s.dtype.startswith("float"):
            out.append(0.5 * torch.randn(shape, generator=gen, dtype=torch.float64))
        else:
            out.append(torch.zeros(shape, dtype=torch.int64 if s.dtype == "int64" else torch.int32))
    return tuple(out)


def check_shapes(lm: ProtocolLM, vocab_size: int) -> None:
    """Run the module at batch 2 and 3, T 1 and 5: logits (B, T, V) with V the tokenizer's size, and
    every returned state exactly as declared (shape with batch filled in, dtype)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for batch, t in ((2, 5), (3, 1)):
            ids = torch.randint(0, vocab_size, (batch, t), generator=gen)
            state = tuple(s.float() if s.is_floating_point() else s for s in _random_state(lm, batch, gen))
            try:
                logits, new = lm.module(ids, lm.to_user(state))
            except ConfigError:
                raise
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                if isinstance(exc, IndexError) or "out of range" in first:
                    raise ConfigError(
                        f"the module cannot take token ids up to {vocab_size - 1} (the tokenizer has {vocab_size} "
                        f"tokens): does its vocabulary match the tokenizer? ({first})"
                    ) from exc
                raise ConfigError(f"the module fails on ids [{batch}, {t}] with its declared states: {first}") from exc
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (batch, t, vocab_size):
                got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ConfigError(
                    f"the module returns logits {got} for ids [{batch}, {t}]; expected [{batch}, {t}, {vocab_size}] "
                    "(batch, time, the tokenizer's size)"
                )
            new = tuple(new)
            if len(new) != len(lm.specs):
                raise ConfigError(f"the module returns {len(new)} state tensors; it declares {len(lm.specs)}")
            for spec, got in zip(lm.specs, new, strict=True):
                want = [batch if d == "batch" else d for d in spec.shape]
                dtype = str(got.dtype).removeprefix("torch.")
                if list(got.shape) != want or dtype != spec.dtype:
                    raise ConfigError(
                        f"state {spec.name!r}: the module returns {list(got.shape)} {dtype} "
                        f"but declares {list(spec.shape)} {spec.dtype} (batch {batch}); nothing written"
                    )


def check_step_matches_parallel(lm: ProtocolLM, vocab_size: int, tolerance: float) -> float:
    """fp64: the parallel form over CHECK_T tokens vs CHECK_T single steps from the same random state.
    VerificationError when they disagree by more than `tolerance`; returns the max abs difference."""
    ref = copy.deepcopy(lm).double().eval()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab_size, (2, CHECK_T), generator=gen)  # (B, T)
    state0 = _random_state(lm, 2, gen)
    with torch.no_grad():
        want_logits, want_state = ref(ids, state0)  # (B, T, V)
        state, steps = state0, []
        for t in range(CHECK_T):
            logits, state = ref(ids[:, t : t + 1], state)  # (B, 1, V)
            steps.append(logits)
    got = [torch.cat(steps, dim=1), *state]
    want = [want_logits, *want_state]
    diff = max(float((a.double() - b.double()).abs().max()) for a, b in zip(got, want, strict=True))
    if not np.isfinite(diff) or diff > tolerance:
        raise VerificationError(
            f"the module's step form (T=1, {CHECK_T} steps) and its parallel form (T={CHECK_T}) disagree: "
            f"max abs diff {diff:.3g} (tolerance {tolerance:g}); nothing written"
        )
    return diff
