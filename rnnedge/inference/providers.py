"""Execution providers: rnnedge's names (cpu | cuda | tensorrt, the emulated CPU targets
cpu-x86-avx2 | cpu-arm64, qnn-htp, and the other runtimes openvino | tract) -> what this onnxruntime
build has, or the target (emulator, plugin EP, other runtime) whose `open` makes the graph's session.

CUDA runs with TF32 off unless asked (`tf32=True`): TF32 rounds MatMul inputs to 10 mantissa bits
(~5e-4 relative per product instead of fp32's ~6e-8), which ORT's CUDA EP uses by default; it would
make the exporter's 1e-4 checks pass or fail by luck of the default. `ProviderChoice` carries the
options a command sets (TF32, CUDA graphs, the device) through every session call that takes
`providers`, so a `--tf32` flag reaches the sessions without new parameters on each of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import onnxruntime as ort

from rnnedge.errors import DependencyError, RnnedgeError
from rnnedge.targets.registry import ROUTED, target_spec
from rnnedge.targets.spec import TargetSpec

# --provider names -> ONNX Runtime execution providers (most preferred first; CPU is always the fallback).
PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cpu-x86": ("CPUExecutionProvider",),  # the target name of this machine's own CPU (same as "cpu")
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
GPU_HINT = "install the GPU build with `pip install 'rnnedge[gpu]'` (onnxruntime-gpu, on a CUDA machine)"
CUDA_EP, TENSORRT_EP = "CUDAExecutionProvider", "TensorrtExecutionProvider"
DEVICE_PROVIDERS = (CUDA_EP, TENSORRT_EP)  # providers whose tensors live in CUDA device memory
PROVIDER_NAMES = (*PROVIDERS, *ROUTED)  # what --provider takes


def _check_name(name: str) -> str:
    key = name.lower() if isinstance(name, str) else name
    if key not in PROVIDER_NAMES:
        raise RnnedgeError(f"unknown provider {name!r}; choose one of {', '.join(PROVIDER_NAMES)}")
    return key


@dataclass(frozen=True)
class ProviderChoice:
    """A --provider name plus the options rnnedge sets on it.

    `tf32`: let the CUDA EP use TF32 MatMuls (faster on Ampere and later GPUs; inputs rounded to 10
    mantissa bits, see the module docstring). `cuda_graph`: ORT's `enable_cuda_graph` (CUDA EP only):
    the first runs capture one CUDA graph per input/output binding and later runs replay it; only for
    sessions whose inputs and outputs are bound to fixed device buffers (StepSession on CUDA does
    that). `device_id`: the GPU.
    """

    name: str = "cpu"
    tf32: bool = False
    cuda_graph: bool = False
    device_id: int = 0

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.tf32 and self.name.lower() not in ("cuda", "tensorrt"):
            raise RnnedgeError("--tf32 applies to the cuda and tensorrt providers (CPU MatMuls are always fp32)")
        if self.cuda_graph and self.name.lower() != "cuda":
            raise RnnedgeError(f"CUDA graphs are an option of the cuda provider, not of {self.name!r}")
        if isinstance(self.device_id, bool) or not isinstance(self.device_id, int) or self.device_id < 0:
            raise RnnedgeError(f"device_id must be an integer >= 0, got {self.device_id!r}")

    @property
    def on_gpu(self) -> bool:
        """True for the CUDA and TensorRT providers (device memory, Memcpy nodes)."""
        return self.name.lower() in ("cuda", "tensorrt")


ProviderArg = str | Sequence[str] | ProviderChoice | None


def routed_target(providers: ProviderArg) -> TargetSpec | None:
    """The TargetSpec when `providers` names a routed target (registry.ROUTED: an emulated CPU, whose
    graphs run in a worker under qemu, or another runtime), else None. DependencyError, with the reason,
    when it cannot run here."""
    name = providers.name if isinstance(providers, ProviderChoice) else providers
    if not isinstance(name, str) or name.lower() not in ROUTED:
        return None
    spec = target_spec(name.lower())
    available = spec.probe()
    if not available.ok:
        raise DependencyError(f"--provider {spec.name} cannot run here: {available.reason}")
    return spec


emulated_target = routed_target  # the name before other runtimes were routed too
own_session_target = routed_target  # the qnn-htp branch's name


def resolve_providers(providers: ProviderArg) -> list[str]:
    """`None`/'cpu'/'cuda'/'tensorrt' or a list of ORT provider names -> the providers this build has.

    A requested first provider that this onnxruntime lacks raises DependencyError naming what is there.
    """
    available = ort.get_available_providers()
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, ProviderChoice):
        providers = providers.name
    if isinstance(providers, str):
        key = _check_name(providers)
        target = routed_target(key)
        if target is not None:  # the emulated CPU's own inside the worker, the target's EP, or another runtime
            return list(target.providers)
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


def provider_entries(
    names: Sequence[str], tf32: bool = False, cuda_graph: bool = False, device_id: int = 0
) -> list[Any]:
    """What InferenceSession(providers=...) takes: names, with options where rnnedge sets any.

    CUDA always gets `use_tf32` (0 unless `tf32`), plus `enable_cuda_graph` when asked; CUDA and
    TensorRT get `device_id` when it is not 0.
    """
    out: list[Any] = []
    for name in names:
        options: dict[str, str] = {}
        if name == CUDA_EP:
            options["use_tf32"] = "1" if tf32 else "0"
            if cuda_graph:
                options["enable_cuda_graph"] = "1"
        if name in DEVICE_PROVIDERS and device_id:
            options["device_id"] = str(device_id)
        out.append((name, options) if options else name)
    return out


def choice_entries(providers: ProviderArg, tf32: bool = False) -> list[Any]:
    """resolve_providers + provider_entries: a ProviderChoice's own options, `tf32` also turning TF32 on."""
    names = resolve_providers(providers)
    if isinstance(providers, ProviderChoice):
        return provider_entries(names, providers.tf32 or tf32, providers.cuda_graph, providers.device_id)
    return provider_entries(names, tf32)


def session_device(session: ort.InferenceSession) -> tuple[str, int]:
    """('cuda', device id) when the session's first provider computes in CUDA memory, else ('cpu', 0)."""
    first = session.get_providers()[0]
    if first not in DEVICE_PROVIDERS:
        return "cpu", 0
    options = session.get_provider_options().get(first, {})
    return "cuda", int(options.get("device_id", 0) or 0)


def cuda_graph_enabled(session: ort.InferenceSession) -> bool:
    """Whether ORT's CUDA EP captures and replays CUDA graphs in this session."""
    options = session.get_provider_options().get(CUDA_EP, {})
    return str(options.get("enable_cuda_graph", "0")).lower() in ("1", "true")
