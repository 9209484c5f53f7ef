"""Build the ARM64 sysroot the cpu-arm64 target runs in: Debian's arm64 Python + aarch64 PyPI wheels.

    rnnedge targets setup cpu-arm64        # once; later runs find it cached and touch nothing

Steps (Debian/Ubuntu host, root for the apt steps; see ../shared/docs/reference.md "ARM64 under qemu-user"):
  1. `dpkg --add-architecture arm64 && apt-get update` (only when arm64 is not yet an architecture);
  2. `apt-get download` python3.11:arm64 and the libraries it links, `dpkg-deb -x` each into SYSROOT;
  3. `pip install --target SITE --platform manylinux_2_28_aarch64 … --only-binary=:all:` onnxruntime and
     numpy at the host's own versions (so host and ARM64 runs differ only in the CPU);
  4. SYSROOT/proc/cpuinfo: a Neoverse-N1's (qemu's -L prefix shows it to the guest as /proc/cpuinfo;
     onnxruntime's cpuinfo library reads it at import and crashes on the host's x86 one);
  5. a `ready.json` stamp written last: a half-built sysroot is never taken for a finished one.
The cache lives in $RNNEDGE_CACHE (default ~/.cache/rnnedge)/arm64. Offline after the first run.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from rnnedge.errors import DependencyError
from rnnedge.io import write_text

DEBS = [
    "python3.11:arm64",
    "python3.11-minimal:arm64",
    "libpython3.11-minimal:arm64",
    "libpython3.11-stdlib:arm64",
    "libc6:arm64",
    "libexpat1:arm64",
    "zlib1g:arm64",
    "libssl3:arm64",
    "libffi8:arm64",
    "libbz2-1.0:arm64",
    "liblzma5:arm64",
    "libsqlite3-0:arm64",
    "libgcc-s1:arm64",
    "libstdc++6:arm64",
    "libuuid1:arm64",
    "libncursesw6:arm64",
    "libtinfo6:arm64",
    "libreadline8:arm64",
    "libdb5.3:arm64",
    "libgdbm6:arm64",
    "libcrypt1:arm64",
    "libnsl2:arm64",
    "libtirpc3:arm64",
]
PYTHON = "usr/bin/python3.11"
# What Linux shows for one Neoverse-N1 core (AWS Graviton2); two cores, so thread counts of 2 are real.
CPUINFO_CORE = (
    "processor\t: {n}\nBogoMIPS\t: 243.75\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
    "asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\n"
    "CPU revision\t: 1\n\n"
)
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")  # Debian 12: glibc 2.36


def cache_root() -> Path:
    """$RNNEDGE_CACHE, or ~/.cache/rnnedge."""
    return Path(os.environ.get("RNNEDGE_CACHE") or Path.home() / ".cache" / "rnnedge")


def arm64_root() -> Path:
    return cache_root() / "arm64"


def ready(root: Path | None = None) -> dict | None:
    """The stamp of a finished sysroot (versions inside), or None."""
    stamp = (root or arm64_root()) / "ready.json"
    try:
        return json.loads(stamp.read_text()) if stamp.is_file() else None
    except (OSError, ValueError):
        return None


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise DependencyError(f"{what} failed ({' '.join(cmd[:3])} ...): {tail[0][:300]}")


def build(log: Callable[[str], None] = print) -> Path:
    """Build (or find) the ARM64 sysroot; returns its folder. DependencyError with the failing step."""
    root = arm64_root()
    versions = {p: importlib.metadata.version(p) for p in ("onnxruntime", "numpy")}
    stamp = ready(root)
    if stamp and stamp.get("versions") == versions:
        log(f"cpu-arm64 sysroot ready: {root}")
        return root
    for tool in ("dpkg", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise DependencyError(f"building the ARM64 sysroot needs {tool} (a Debian/Ubuntu host)")
    debs, sysroot, site = root / "debs", root / "sysroot", root / "site"
    debs.mkdir(parents=True, exist_ok=True)
    (root / "ready.json").unlink(missing_ok=True)
    arches = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split()
    if "arm64" not in arches:
        log("adding the arm64 architecture to dpkg and updating apt's lists ...")
        _run(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64 (needs root)")
        _run(["apt-get", "update", "-qq"], "apt-get update")
    if not any(debs.glob("python3.11_*arm64.deb")):
        log(f"downloading {len(DEBS)} arm64 Debian packages ...")
        _run(["apt-get", "download", "-qq", *DEBS], "apt-get download (arm64 packages)", cwd=debs)
    shutil.rmtree(sysroot, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(sysroot)], f"dpkg-deb -x {deb.name}")
    (sysroot / "proc").mkdir(parents=True, exist_ok=True)
    write_text(sysroot / "proc" / "cpuinfo", "".join(CPUINFO_CORE.format(n=n) for n in range(2)))
    log(f"installing aarch64 wheels {versions} ...")
    shutil.rmtree(site, ignore_errors=True)
    pins = [f"{p}=={v}" for p, v in versions.items()]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(site)]
    pip += [a for tag in PLATFORMS for a in ("--platform", tag)]
    pip += ["--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:", *pins]
    _run(pip, "pip install (aarch64 wheels)")
    write_text(root / "ready.json", json.dumps({"versions": versions, "python": PYTHON}))  # atomic: whole or absent
    log(f"cpu-arm64 sysroot ready: {root}")
    return root
