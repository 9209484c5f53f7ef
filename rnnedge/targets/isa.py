"""What a CPU's int8 kernels do, from its features (Linux /proc/cpuinfo; torch-free, onnx-free).

ONNX Runtime's MLAS picks its u8·s8 GEMM kernel by CPU feature at run time, so the same int8 file
computes differently on different CPUs (ORT's quantization docs, "reduce_range"):
  x86 AMX-INT8          TDPBUSD tiles: exact int32 sums
  x86 AVX-512/AVX VNNI  VPDPBUSD: u8·s8 products summed straight into int32, exact
  x86 AVX2 only         VPMADDUBSW: two u8·s8 products summed in *saturating int16* (255·127·2 > 32767),
                        then VPMADDWD into int32 — inexact unless weights are 7-bit (reduce_range) or uint8
  ARM64 dot product     SDOT/UDOT (asimddp): exact int32 sums
u8·u8 products (uint8 weights) are widened to int16 before multiplying on every x86 path: exact everywhere.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

X86_INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


@cache
def cpuinfo_fields(cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first CPU's 'key: value' lines of /proc/cpuinfo (read once; {} where it cannot be read)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")[:1_000_000]
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block ends at its blank line
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The feature flags of the first CPU listed in /proc/cpuinfo ('flags' on x86, 'Features' on ARM)."""
    fields = cpuinfo_fields(cpuinfo)
    return frozenset((fields.get("flags") or fields.get("Features") or "").split())


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (x86 'model name'), or the machine type where none is listed."""
    return cpuinfo_fields(cpuinfo).get("model name") or platform.machine() or "unknown"


def x86_int8_path(flags: frozenset[str]) -> str:
    """How ORT's MLAS computes u8·s8 int8 products on an x86 CPU with these features."""
    if "amx_int8" in flags:
        return "AMX-INT8 tiles (TDPBUSD): exact int32 sums"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "VNNI (VPDPBUSD): exact int32 sums"
    if "avx2" in flags:
        return "AVX2 (VPMADDUBSW): u8·s8 pairs summed in saturating int16 — exact only for 7-bit or uint8 weights"
    return "SSE4.1/scalar: u8·s8 widened to int16, exact"


def x86_isa(flags: frozenset[str]) -> list[str]:
    """The int8-relevant x86 features present, e.g. ['avx2', 'avx512f', 'avx512_vnni', 'amx_int8']."""
    return [f for f in X86_INT8_FLAGS if f in flags]
