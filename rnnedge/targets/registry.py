"""The target registry (torch-free): one line per target. Adding a target = one file + one line here.

Each listed module defines `SPEC: TargetSpec` (spec.py). Names are known without importing the module
(CLI help, --provider validation); `target_spec(name)` imports it on first use.
"""

from __future__ import annotations

import importlib
from functools import cache

from rnnedge.errors import ConfigError
from rnnedge.targets.spec import TargetSpec

TARGET_MODULES: dict[str, str] = {
    "cpu-x86": "rnnedge.targets.cpu_x86",
    "cpu-x86-avx2": "rnnedge.targets.cpu_x86_avx2",
    "cpu-arm64": "rnnedge.targets.cpu_arm64",
    "mobile": "rnnedge.targets.mobile",
    "cuda": "rnnedge.targets.cuda",
    "tensorrt": "rnnedge.targets.tensorrt",
    "qnn-htp": "rnnedge.targets.qnn_htp",
    "openvino": "rnnedge.targets.openvino",
    "tract": "rnnedge.targets.tract",
    "litert": "rnnedge.targets.litert",
}
# Targets whose graphs run in an emulator started by rnnedge (spec.runs == "emulated"): known without
# importing their modules, so `--provider` can be routed cheaply (inference/providers.py).
EMULATED: tuple[str, ...] = ("cpu-x86-avx2", "cpu-arm64")
# Targets whose spec has `open`: `--provider NAME` gets the session their `open` returns instead of an ONNX
# Runtime one made by inference/sessions.py: the emulated CPUs, the host accelerator reached through a plugin
# EP (qnn-htp), and the other runtimes (OpenVINO, tract).
ROUTED: tuple[str, ...] = (*EMULATED, "qnn-htp", "openvino", "tract", "litert")
OWN_SESSIONS = ROUTED  # the qnn-htp branch's name for the same tuple
TARGET_NAMES: tuple[str, ...] = tuple(TARGET_MODULES)
ALIASES = {"cpu": "cpu-x86"}  # `--provider cpu` (rnnedge 0.1) is this machine's own CPU


def check_target_name(name: str) -> str:
    """The registered name for `name` (aliases resolved); ConfigError listing the targets otherwise."""
    key = ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in TARGET_MODULES:
        raise ConfigError(f"unknown target {name!r}; choose one of {', '.join(TARGET_NAMES)}")
    return key


@cache
def target_spec(name: str) -> TargetSpec:
    """The TargetSpec of a registered target (imports its module)."""
    key = check_target_name(name)
    module = importlib.import_module(TARGET_MODULES[key])
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, TargetSpec) or spec.name != key:
        raise ConfigError(f"{TARGET_MODULES[key]} does not define SPEC = TargetSpec(name={key!r}, ...)")
    return spec


def all_targets() -> list[TargetSpec]:
    """Every registered target, in registry order."""
    return [target_spec(n) for n in TARGET_NAMES]
