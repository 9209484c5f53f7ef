"""Does onnxruntime's CUDA provider really load? Listed is not enough.

onnxruntime-gpu lists "CUDAExecutionProvider" in `get_available_providers()` even when its CUDA
runtime libraries (libcudart.so.13, libcublas.so.13, cuDNN: the `onnxruntime-gpu[cuda,cudnn]`
extras) are missing; a session asked for it then silently falls back to the CPU EP. This module opens
a one-node session with the CUDA EP and checks `get_providers()`, so a check can fail fast instead.
"""

from __future__ import annotations

from collections.abc import Callable

import onnxruntime as ort

from rnnedge.inference.providers import CUDA_EP

CUDA_INSTALL_HINT = (
    "pip install 'onnxruntime-gpu[cuda,cudnn]' (its CUDA 13 runtime: libcudart.so.13, libcublas.so.13, "
    "cuDNN 9), or put those libraries on LD_LIBRARY_PATH"
)


def _identity_model() -> bytes:
    """A one-node float Identity graph, serialised (opset 17); onnx is imported here, so importing this
    module keeps the inference layer onnx-free."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def cuda_provider_problem(session_factory: Callable[..., ort.InferenceSession] | None = None) -> str | None:
    """None when a session asked for the CUDA EP really gets it; otherwise one line saying why and what to install.

    `session_factory` defaults to `ort.InferenceSession` (tests pass a fake whose session falls back).
    """
    if CUDA_EP not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no {CUDA_EP} (pip install onnxruntime-gpu)"
    factory = session_factory or ort.InferenceSession
    try:
        session = factory(_identity_model(), providers=[CUDA_EP, "CPUExecutionProvider"])
    except Exception as exc:  # a missing shared library can surface as an exception too
        return f"{CUDA_EP} is listed but a session with it fails ({type(exc).__name__}: {exc}); {CUDA_INSTALL_HINT}"
    got = session.get_providers()
    if CUDA_EP not in got:
        return f"{CUDA_EP} is listed but did not load (session providers: {', '.join(got)}); {CUDA_INSTALL_HINT}"
    return None


__all__ = ["CUDA_EP", "CUDA_INSTALL_HINT", "cuda_provider_problem"]
