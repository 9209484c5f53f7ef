"""This process's resident memory, read from Linux's /proc/self/status (no psutil, no torch).

`resident()` gives the resident set now (VmRSS) and its high-water mark (VmHWM), in bytes;
`reset_peak()` restarts the high-water mark at the current RSS (writing "5" to
/proc/self/clear_refs, Linux ≥ 4.0), so a peak read afterwards belongs to what ran since. Elsewhere
(macOS, Windows, a kernel without these files) both say so instead of guessing: `resident()` is
None and `reset_peak()` False.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
UNAVAILABLE = "resident memory not available here (needs Linux /proc/self/status)"
T = TypeVar("T")


def resident(status: Path = STATUS) -> dict[str, int] | None:
    """{"rss": bytes resident now, "peak": the high-water mark} of this process, or None if unknown."""
    try:
        text = status.read_text()
    except OSError:
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            parts = value.split()  # "12345 kB"
            if len(parts) == 2 and parts[0].isdigit() and parts[1] == "kB":
                fields[key] = int(parts[0]) * 1024
    if "VmRSS" not in fields or "VmHWM" not in fields:
        return None
    return {"rss": fields["VmRSS"], "peak": fields["VmHWM"]}


def reset_peak(clear_refs: Path = CLEAR_REFS) -> bool:
    """Restart the high-water mark (VmHWM) at the current RSS; False where the kernel does not allow it."""
    try:
        clear_refs.write_text("5")
    except OSError:
        return False
    return True


def measure_resident(make: Callable[[], T], use: Callable[[T], Any]) -> tuple[T, dict[str, Any]]:
    """(`make()`, memory figures in bytes) around making an object and using it.

    Figures: `rss_before` (before `make`), `rss_made` (after it), `rss_used` (after `use(obj)`), the
    deltas `made_bytes` = rss_made − rss_before and `used_bytes` = rss_used − rss_made, and `peak`:
    the process's high-water mark over make + use (restarted first when the kernel allows, else the
    process's lifetime peak; `peak_since_reset` says which). RSS counts the whole process, so a
    delta can be smaller than what was allocated when the allocator reuses memory freed earlier.
    `{"available": False, "note": ...}` (and `make`/`use` still run) where /proc is missing.
    """
    before = resident()
    peak_reset = reset_peak() if before is not None else False
    obj = make()
    made = resident()
    use(obj)
    used = resident()
    if before is None or made is None or used is None:
        return obj, {"available": False, "note": UNAVAILABLE}
    return obj, {
        "available": True,
        "rss_before": before["rss"],
        "rss_made": made["rss"],
        "rss_used": used["rss"],
        "made_bytes": made["rss"] - before["rss"],
        "used_bytes": used["rss"] - made["rss"],
        "peak": used["peak"],
        "peak_since_reset": peak_reset,
    }
