"""cpu-arm64: an ARM64 (AArch64) CPU with dot-product instructions, e.g. Neoverse-N1 (AWS Graviton2),
Cortex-A76/A78 (phones, Raspberry Pi 5), run here under qemu-aarch64.

The worker runs in an ARM64 sysroot (arm64_sysroot.py: Debian's arm64 Python 3.11 + the aarch64 wheels
of this host's onnxruntime and numpy versions), so host and ARM64 results differ only in the CPU. qemu's
`-L SYSROOT` prefix also redirects the guest's /proc/cpuinfo to SYSROOT/proc/cpuinfo, where the builder
writes a Neoverse-N1's: onnxruntime reads it at import (it crashes on the host's x86 one), no root needed.
MLAS on ARM64 with `asimddp` computes u8/s8 products with UDOT/SDOT/USDOT into exact int32 sums.
"""

from __future__ import annotations

from typing import Any

from rnnedge.targets import arm64_sysroot
from rnnedge.targets.qemu import probe_qemu, qemu_binary
from rnnedge.targets.remote import RemoteSession
from rnnedge.targets.spec import Availability, TargetSpec

CPU_MODEL = "neoverse-n1"  # ARMv8.2-A with dot product (asimddp), as in AWS Graviton2


def _probe() -> Availability:
    qemu = probe_qemu("aarch64")
    if not qemu.ok:
        return qemu
    stamp = arm64_sysroot.ready()
    if stamp is None:
        root = arm64_sysroot.arm64_root()
        return Availability(False, f"no ARM64 sysroot in {root}; run `rnnedge targets setup cpu-arm64`")
    version = stamp["versions"]["onnxruntime"]
    return Availability(True, f"{qemu.reason} -cpu {CPU_MODEL}, onnxruntime {version} (aarch64)")


def _open(source: Any, threads: int | None = None, config: Any = None, optimization: str = "all") -> RemoteSession:
    why = _probe()
    if not why.ok:
        from rnnedge.errors import DependencyError

        raise DependencyError(f"cpu-arm64 cannot run here: {why.reason}")
    root = arm64_sysroot.arm64_root()
    sysroot = root / "sysroot"
    command = [qemu_binary("aarch64") or "qemu-aarch64-static", "-cpu", CPU_MODEL, "-L", str(sysroot)]
    command.append(str(sysroot / arm64_sysroot.PYTHON))
    env = {"PYTHONPATH": str(root / "site"), "PYTHONHOME": str(sysroot / "usr"), "PYTHONNOUSERSITE": "1"}
    return RemoteSession(command, env, source, "cpu-arm64", threads, config, optimization)


def _describe() -> dict[str, Any]:
    return {"cpu": f"qemu {CPU_MODEL} (ARMv8.2-A, asimddp)", "isa": ["asimd", "asimddp"], "emulated": True}


SPEC = TargetSpec(
    name="cpu-arm64",
    summary="ARM64 Neoverse-N1 (dot product) under qemu-aarch64, in a Debian arm64 sysroot",
    device="ARM64 CPU (ARMv8.2-A with dot product)",
    runs="emulated",
    probe=_probe,
    int8_path=lambda: "ARM64 dot product (UDOT/SDOT, asimddp): exact int32 sums",
    describe=_describe,
    open=_open,
    reference="MLAS QGEMM kernels for AArch64 (UDOT/SDOT); ../shared/docs/reference.md, ARM64 under qemu-user",
)
