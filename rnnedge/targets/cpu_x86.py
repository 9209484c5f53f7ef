"""cpu-x86: this machine's own x86-64 CPU, through ONNX Runtime's CPU EP in this process.

int8 results depend on the ISA (isa.py): the manifest and every report name it, so a figure measured
on a VNNI machine is never passed off as holding on an AVX2-only one (`cpu-x86-avx2` emulates that).
"""

from __future__ import annotations

import platform
from typing import Any

from rnnedge.targets.isa import cpu_flags, cpu_model, x86_int8_path, x86_isa
from rnnedge.targets.spec import Availability, TargetSpec


def _probe() -> Availability:
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return Availability(False, f"this machine is {machine}, not x86-64")
    return Availability(True, f"this CPU: {cpu_model()} ({', '.join(x86_isa(cpu_flags())) or 'no AVX2'})")


def _describe() -> dict[str, Any]:
    return {"cpu": cpu_model(), "isa": x86_isa(cpu_flags()), "emulated": False}


SPEC = TargetSpec(
    name="cpu-x86",
    summary="this machine's x86-64 CPU (ONNX Runtime CPU EP, in process)",
    device="host x86-64 CPU",
    runs="host",
    probe=_probe,
    int8_path=lambda: x86_int8_path(cpu_flags()),
    describe=_describe,
    reference="ONNX Runtime quantization docs (reduce_range, U8S8 on AVX2); MLAS kernel dispatch by CPUID",
)
