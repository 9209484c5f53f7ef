"""Execution providers: rnnedge's names (cpu | cuda | tensorrt) -> what this onnxruntime build has.

CUDA runs with TF32 off unless asked (`tf32=True`): ORT's default TF32 moves parallel-graph logits by
~1e-2 at T = 4096, which would make the exporter's 1e-4 checks pass or fail by luck.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnxruntime as ort

from rnnedge.errors import DependencyError, RnnedgeError

# --provider names -> ONNX Runtime execution providers (most preferred first; CPU is always the fallback).
PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
GPU_HINT = "install the GPU build with `pip install 'rnnedge[gpu]'` (onnxruntime-gpu, on a CUDA machine)"
ProviderArg = str | Sequence[str] | None


def resolve_providers(providers: ProviderArg) -> list[str]:
    """`None`/'cpu'/'cuda'/'tensorrt' or a list of ORT provider names -> the providers this build has.

    A requested first provider that this onnxruntime lacks raises DependencyError naming what is there.
    """
    available = ort.get_available_providers()
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        key = providers.lower()
        if key not in PROVIDERS:
            raise RnnedgeError(f"unknown provider {providers!r}; choose one of {', '.join(PROVIDERS)}")
        wanted = list(PROVIDERS[key])
    else:
        wanted = list(providers)
        if not wanted:
            raise RnnedgeError("no execution provider given")
    if wanted[0] not in available:
        raise DependencyError(
            f"execution provider {wanted[0]} is not in this onnxruntime build "
            f"(available: {', '.join(available)}); {GPU_HINT}"
        )
    return [p for p in wanted if p in available]


def provider_entries(names: Sequence[str], tf32: bool = False) -> list[Any]:
    """What InferenceSession(providers=...) takes: names, with options where rnnedge sets any."""
    out: list[Any] = []
    for name in names:
        if name == "CUDAExecutionProvider":
            out.append((name, {"use_tf32": "1" if tf32 else "0"}))
        else:
            out.append(name)
    return out
