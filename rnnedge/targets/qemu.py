"""qemu-user, the emulator behind rnnedge's emulated CPU targets (torch-free, onnx-free).

qemu-user runs one Linux program of another CPU (or of a smaller x86 CPU model) on this machine,
translating its instructions: the program's integer kernels compute exactly what that CPU computes,
only slower. rnnedge runs its graph worker (worker.py) under it, so ONNX Runtime's own CPU-feature
dispatch picks the emulated CPU's int8 kernels (CPUID / the ARM feature registers are emulated too).
Debian/Ubuntu: `apt-get install qemu-user-static`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rnnedge.targets.spec import Availability

INSTALL_HINT = "install qemu-user-static (Debian/Ubuntu: `apt-get install qemu-user-static`)"


def qemu_binary(arch: str) -> str | None:
    """The path of qemu-user for `arch` ('aarch64', 'x86_64'): the static build first, else the dynamic one."""
    for name in (f"qemu-{arch}-static", f"qemu-{arch}"):
        found = shutil.which(name)
        if found:
            return found
    return None


def probe_qemu(arch: str) -> Availability:
    """Whether qemu-user for `arch` is installed (with the install hint when it is not)."""
    found = qemu_binary(arch)
    if found is None:
        return Availability(False, f"qemu-{arch}-static is not installed; {INSTALL_HINT}")
    return Availability(True, f"emulated by {Path(found).name}")
