"""Test support: fla-core's real `chunk_hgrn` kernels on CPU tensors under Triton's interpreter.

Import this module before anything imports `fla`: `triton.jit` picks the interpreter when a kernel is
decorated, so TRITON_INTERPRET=1 must be set first. Two interpreter obstacles are worked around here,
in test code only (rnnedge never patches fla):
- the autotuner benchmarks its configs through a GPU driver ("0 active drivers"); an Autotuner with one
  config skips benchmarking, so each autotuned kernel is pinned to one config (BD=32: with D=64 two
  feature blocks run, so block offsets are exercised too);
- `(i_t * BT).to(tl.int64)` fails because the interpreter's `range` yields Python ints; the kernels'
  module gets a `range` that yields interpreter scalars (what a compiled kernel's loop variable is).
Pinned versions (pyproject's gpu-test extra): triton 3.8.0 (3.9.0's interpreter rejects these kernels:
"mask has unsupported dtype"), fla-core 0.6.0.
"""

from __future__ import annotations

import builtins
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import torch

REASON = ""
chunk: ModuleType | None = None
if "fla" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
    REASON = "fla was imported before TRITON_INTERPRET=1 was set (its kernels are compiled, not interpreted)"
elif torch.cuda.is_available():
    # On a CUDA machine the env var would also turn test_gpu.py's real fla kernels into interpreted ones.
    REASON = "a CUDA device is present: tests/test_gpu.py runs fla's kernels for real"
else:
    os.environ["TRITON_INTERPRET"] = "1"  # before fla is imported (triton.jit reads it at decoration)
    try:
        import fla.ops.hgrn.chunk as chunk
        import triton
        import triton.language as tl
        from triton.runtime.interpreter import _implicit_cvt
    except Exception as exc:  # absent triton/fla, or a version whose interpreter differs
        chunk = None
        REASON = f"no fla-core/triton interpreter ({type(exc).__name__}: {exc}); pip install -e '.[gpu-test]'"


def _scalar_range(*args: Any) -> Iterator[Any]:
    """`range` for interpreted kernels: yields interpreter int32 scalars, as a compiled loop would."""
    bounds = [int(a.handle.data.item()) if isinstance(a, tl.tensor) else int(a) for a in args]
    for i in builtins.range(*bounds):
        yield _implicit_cvt(i)


def install() -> None:
    """Pin each autotuned kernel to one config and give the kernels' module the scalar `range`."""
    assert chunk is not None, REASON
    for name in ("chunk_hgrn_fwd_kernel_h", "chunk_hgrn_bwd_kernel_h"):
        kernel = getattr(chunk, name)
        kernel.configs = [triton.Config({"BD": 32}, num_warps=1)]  # one config: no GPU benchmarking
    chunk.range = _scalar_range  # kernels' loops only; the host code in chunk.py does not call range


if chunk is not None:
    install()
