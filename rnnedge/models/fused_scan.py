"""The minimal cells' recurrence on CUDA through fla-core's fused HGRN kernel; the doubling scan everywhere else.

Both minimal cells are h_t = a_t ⊙ h_{t−1} + b_t with a_t = σ(−k_t) (paper, section 3; minGRU: k = the
z-gate logit, minLSTM: k = diff of Appendix B). fla-core (flash-linear-attention's kernels; PyPI
`fla-core`, import `fla`) has Triton kernels for HGRN's recurrence h_t = exp(g_t) ⊙ h_{t−1} + x_t, so

    g_t = log a_t = −softplus(k_t)     (exact in fp32: no log of a rounded σ)      x_t = b_t

`fla.ops.hgrn.chunk_hgrn(x, g, initial_state=None, output_final_state=False) -> (o, final_state)` is
the kernel used: chunks of 128 steps, the recurrence exact inside a chunk and carried between chunks,
so its work is O(T) and parallel over chunks, where fla's `fused_recurrent_hgrn` walks T in order per
channel and the doubling scan does O(T log T) work in ceil(log2 T) full-tensor passes.
`benchmarks/train_speed.py --device cuda` times all three (docs/gpu.md). `chunk_hgrn`'s backward
returns no gradient for `initial_state`, so a carried state that needs one is folded into x_0 instead
(b_0 + a_0 ⊙ h_0, what `linear_scan` does).

When the fused kernel runs (`choose_scan`): a CUDA tensor, T > 1, no fixed doubling depth (the
exporter fixes `scan_levels`), not tracing or exporting, fla importable, and `RNNEDGE_SCAN` not
`doubling`. Everything else — CPU, the exported graphs, a missing fla — takes `scan.linear_scan`.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from rnnedge.errors import ConfigError, DependencyError

SCAN_ENV = "RNNEDGE_SCAN"
# auto: fused on CUDA when fla imports; doubling: always the doubling scan; fused: on CUDA, fla or an error.
SCAN_MODES = ("auto", "doubling", "fused")
FUSED, DOUBLING = "fused", "doubling"

# fla's HGRN signature: kernel(x, g, initial_state=None, output_final_state=False) -> (o, final_state).
HgrnKernel = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]

_forced: list[str] = []  # innermost forced_scan() mode last


def scan_mode() -> str:
    """The scan mode in force: the innermost `forced_scan`, else $RNNEDGE_SCAN, else 'auto'."""
    mode = _forced[-1] if _forced else os.environ.get(SCAN_ENV, "auto").strip().lower() or "auto"
    if mode not in SCAN_MODES:
        raise ConfigError(f"{SCAN_ENV} must be one of {', '.join(SCAN_MODES)}, got {mode!r}")
    return mode


@contextlib.contextmanager
def forced_scan(mode: str) -> Iterator[None]:
    """Within the block the scan mode is `mode` ('auto' | 'doubling' | 'fused'), whatever the environment says."""
    if mode not in SCAN_MODES:
        raise ConfigError(f"scan mode must be one of {', '.join(SCAN_MODES)}, got {mode!r}")
    _forced.append(mode)
    try:
        yield
    finally:
        _forced.pop()


@functools.cache
def _load_fla() -> tuple[HgrnKernel | None, str]:
    try:
        from fla.ops.hgrn import chunk_hgrn
    except Exception as exc:  # ImportError without fla/triton; triton may raise others without a GPU driver
        return None, f"{type(exc).__name__}: {exc}"
    return chunk_hgrn, "fla.ops.hgrn.chunk_hgrn"


def fla_kernel() -> HgrnKernel | None:
    """fla-core's `chunk_hgrn`, or None when it does not import here (imported once, on first CUDA use)."""
    return _load_fla()[0]


def fla_status() -> str:
    """What `fla_kernel` found: the kernel's name, or why fla-core did not import."""
    return _load_fla()[1]


def _tracing() -> bool:
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or bool(exporting())


def scan_choice(mode: str, is_cuda: bool, seq_len: int, levels: int | None, tracing: bool, fla_found: bool) -> str:
    """'fused' or 'doubling' for one call (the rule in the module docstring); DependencyError when mode
    'fused' meets a CUDA call that fla cannot serve."""
    if mode == DOUBLING or not is_cuda or seq_len <= 1 or levels is not None or tracing:
        return DOUBLING
    if fla_found:
        return FUSED
    if mode == FUSED:
        raise DependencyError(f"{SCAN_ENV}=fused but fla-core does not import ({fla_status()}); pip install fla-core")
    return DOUBLING


def choose_scan(k: torch.Tensor, levels: int | None) -> str:
    """'fused' or 'doubling' for the recurrence over k (B, T, H) with the mixer's `scan_levels`."""
    mode = scan_mode()
    if mode == DOUBLING or not k.is_cuda or k.shape[1] <= 1 or levels is not None or _tracing():
        return DOUBLING  # never imports fla off CUDA, for exports or when forced off
    return scan_choice(mode, True, k.shape[1], levels, False, fla_kernel() is not None)


def fused_decay_scan(
    k: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, kernel: HgrnKernel | None = None
) -> torch.Tensor:
    """All h_t of h_t = σ(−k_t) ⊙ h_{t−1} + b_t through an HGRN kernel (default: fla's `chunk_hgrn`).

    k, b: (B, T, H); h0: (B, H) or None. The log-decay g = −softplus(k) is kept in at least fp32
    under any autocast; x = b keeps its dtype, and so does the output. h0 goes to the kernel as its
    initial state unless a gradient must reach it, then it is folded into x_0.
    """
    run = kernel if kernel is not None else fla_kernel()
    if run is None:
        raise DependencyError(f"the fused scan needs fla-core ({fla_status()}); pip install fla-core")
    log_a = -F.softplus(k.to(torch.promote_types(k.dtype, torch.float32)))  # log σ(−k), >= fp32   (B, T, H)
    x = b  # (B, T, H)
    if h0 is not None and h0.requires_grad and torch.is_grad_enabled():
        first = b[:, :1] + (log_a[:, :1].exp() * h0.unsqueeze(1)).to(b.dtype)  # b_0 + a_0 ⊙ h_0   (B, 1, H)
        x = torch.cat([first, b[:, 1:]], dim=1)  # (B, T, H)
        h0 = None
    h, _ = run(x, log_a, initial_state=h0, output_final_state=False)  # (B, T, H)
    return h
