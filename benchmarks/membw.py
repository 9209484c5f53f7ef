"""Memory bandwidth of this machine: a NumPy copy of a buffer larger than the last-level cache.

    python benchmarks/membw.py [--mib N]

GB/s counts the bytes read plus the bytes written (STREAM's "Copy" convention), best of the repeats;
one thread (NumPy's copy does not parallelise). `benchmarks/scaling.py` divides the weight bytes a
step reads per token by this figure to get each model's physical floor.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

CACHES = Path("/sys/devices/system/cpu/cpu0/cache")
MIN_BYTES, MAX_BYTES = 64 << 20, 1 << 30


def last_level_cache_bytes(caches: Path = CACHES) -> int | None:
    """Size of the highest-level CPU cache Linux reports for cpu0 (sysfs), or None if it reports none."""
    best: tuple[int, int] | None = None
    for index in sorted(caches.glob("index*")):
        try:
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()  # "491520K"
        except (OSError, ValueError):
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        value = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        if best is None or level > best[0]:
            best = (level, value)
    return None if best is None else best[1]


def copy_bandwidth(buffer_bytes: int | None = None, reps: int = 5) -> dict[str, Any]:
    """GB/s of `np.copyto` between two float32 buffers of `buffer_bytes` (default: 4x the last-level
    cache, clamped to 64 MiB..1 GiB), best of `reps` after one warm-up copy."""
    llc = last_level_cache_bytes()
    size = buffer_bytes or min(MAX_BYTES, max(MIN_BYTES, 4 * (llc or 0)))
    src = np.ones(size // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touches both buffers: page faults are not timed
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return {
        "copy_gbps": 2 * src.nbytes / best / 1e9,
        "buffer_bytes": int(src.nbytes),
        "last_level_cache_bytes": llc,
        "buffer_over_cache": None if not llc else src.nbytes / llc,
        "reps": reps,
        "method": "numpy copyto of a float32 buffer; bytes read + bytes written per second, best of reps",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--mib", type=int, default=None, help="buffer size in MiB (default: 4x the last-level cache)")
    args = ap.parse_args()
    print(json.dumps(copy_bandwidth(None if args.mib is None else args.mib << 20), indent=1))


if __name__ == "__main__":
    main()
