"""Targets: where a graph runs (torch-free). One file per target + one line in registry.py.

from rnnedge.targets import target_spec, all_targets, where
target_spec("cpu-arm64").probe()        # Availability(ok, reason)
where("cpu-arm64")                      # what a report records: target, device, CPU, int8 path
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from rnnedge.targets.registry import (
    ALIASES,
    EMULATED,
    ROUTED,
    TARGET_NAMES,
    all_targets,
    check_target_name,
    target_spec,
)
from rnnedge.targets.spec import Availability, TargetSpec


def host_target() -> str:
    """The registered target of this machine's own CPU ('cpu-x86' on x86-64; '' where none is registered)."""
    return "cpu-x86" if platform.machine().lower() in ("x86_64", "amd64") else ""


def where(provider: Any = None) -> dict[str, Any]:
    """The facts of the target a `--provider` value (a name or a ProviderChoice; None = this CPU) runs on."""
    name = getattr(provider, "name", provider) or "cpu"
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in TARGET_NAMES:
        key = host_target()
    if not key:
        return {"target": "cpu", "device": platform.machine(), "int8_path": "unknown"}
    return target_spec(key).facts()


def graph_folder(folder: str | Path, provider: Any = None) -> Path:
    """Where an export folder's graphs for `provider` (a name or a ProviderChoice) are: the target's own
    folder inside it (`DIR/qnn-htp`, written by `export --target qnn-htp`) when it is there, else `folder`."""
    path = Path(folder)
    name = str(getattr(provider, "name", provider) or "").lower()
    key = ALIASES.get(name, name)
    if key not in TARGET_NAMES or not path.is_dir():
        return path
    sub = target_spec(key).folder
    if sub and (path / sub / "step.onnx").is_file():
        return path / sub
    return path


def where_line(provider: Any = None) -> str:
    """One line for a command's output: the target, its CPU and how its int8 kernels compute."""
    f = where(provider)
    cpu = f.get("cpu") or f["device"]
    isa = f" ({', '.join(f['isa'])})" if f.get("isa") else ""
    return f"ran on {f['target']}: {cpu}{isa}; int8: {f['int8_path']}"


__all__ = [
    "ALIASES",
    "EMULATED",
    "ROUTED",
    "TARGET_NAMES",
    "Availability",
    "TargetSpec",
    "all_targets",
    "check_target_name",
    "graph_folder",
    "host_target",
    "target_spec",
    "where",
    "where_line",
]
