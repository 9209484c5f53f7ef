"""cpu-x86-avx2: an x86-64 CPU with AVX2 but no AVX-512/VNNI/AMX (e.g. AMD EPYC Rome/Milan, Intel Haswell).

The int8 path that differs: MLAS's u8·s8 GEMM on AVX2 sums product pairs in saturating int16
(VPMADDUBSW), so 8-bit signed weights are inexact there (isa.py). On a VNNI host rnnedge reproduces
such a CPU bit for bit with `qemu-x86_64 -cpu Haswell-noTSX`: the host's own Python and onnxruntime run
under qemu, whose CPUID reports AVX2 only, so ORT dispatches the AVX2 kernels. Measured: the issue's
0.057115 loss delta of an AVX2-only EPYC reproduced exactly. On an AVX2-only host this is the host.
"""

from __future__ import annotations

import sys
from typing import Any

from rnnedge.targets.isa import cpu_flags, x86_int8_path
from rnnedge.targets.qemu import probe_qemu, qemu_binary
from rnnedge.targets.remote import RemoteSession
from rnnedge.targets.spec import Availability, TargetSpec

CPU_MODEL = "Haswell-noTSX"  # qemu's AVX2/FMA/BMI2 CPU model, without AVX-512 or VNNI
AVX2_FLAGS = frozenset({"avx2"})


def _probe() -> Availability:
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return Availability(False, "emulating an x86 AVX2 CPU needs an x86-64 host (the host's Python runs under qemu)")
    return probe_qemu("x86_64")


def _open(source: Any, threads: int | None = None, config: Any = None, optimization: str = "all") -> RemoteSession:
    qemu = qemu_binary("x86_64")
    command = [qemu or "qemu-x86_64-static", "-cpu", CPU_MODEL, sys.executable]
    return RemoteSession(command, {}, source, "cpu-x86-avx2", threads, config, optimization)


def _describe() -> dict[str, Any]:
    return {"cpu": f"qemu {CPU_MODEL} (x86-64 AVX2, no AVX-512/VNNI)", "isa": ["avx2"], "emulated": True}


def _host_is_avx2_only() -> bool:
    flags = cpu_flags()
    return "avx2" in flags and not ({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


SPEC = TargetSpec(
    name="cpu-x86-avx2",
    summary="x86-64 with AVX2 only (no VNNI): qemu -cpu Haswell-noTSX on this machine",
    device="x86-64 CPU, AVX2 without AVX-512/VNNI",
    runs="emulated",
    probe=_probe,
    int8_path=lambda: x86_int8_path(AVX2_FLAGS),
    describe=_describe,
    open=_open,
    reference="MLAS QGEMM kernels (AVX2: VPMADDUBSW + VPMADDWD); qemu target/i386 cpu models",
)
