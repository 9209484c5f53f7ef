"""Peak resident memory of a streaming session, read in a fresh Python process (so nothing else this
process did — torch, exports, other models — is in the figure).

The child imports the runtime (onnxruntime + NumPy) and reads its resident set (VmRSS), resets the
kernel's peak mark (writing 5 to /proc/self/clear_refs resets VmHWM, Linux >= 4.0; ru_maxrss would
still hold the parent's peak, which survives fork + exec), opens a StepSession on the graph, streams
`tokens` tokens through it one by one, and reads the peak (VmHWM). It prints one JSON line:
`peak_bytes` is the whole process's peak during the session, `session_bytes` that peak minus the
resident set after the imports (what the session and its stream added).

    python -m rnnedge.compare.resident STEP_ONNX TOKENS THREADS
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rnnedge.errors import RnnedgeError

TIMEOUT_S = 1800.0
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(key: str) -> int:
    """A `kB` line of /proc/self/status (VmRSS, VmHWM) in bytes."""
    for line in STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RnnedgeError(f"{STATUS} has no {key} line")


def stream(path: str, tokens: int, threads: int) -> dict[str, Any]:
    """Run in the child: open the step graph, stream `tokens` tokens, report the memory (bytes)."""
    import numpy as np

    from rnnedge.runtime import StepSession

    after_import = _status_bytes("VmRSS")
    CLEAR_REFS.write_text("5")  # VmHWM := VmRSS: the peak from here on
    session = StepSession(path, threads=threads)
    ids = np.random.default_rng(0).integers(0, len(session.vocab), size=tokens)  # (tokens,)
    for token in ids.tolist():
        session.feed(token, copy=False)
    peak = _status_bytes("VmHWM")
    return {
        "tokens": tokens,
        "after_import_bytes": after_import,
        "peak_bytes": peak,
        "session_bytes": peak - after_import,
    }


def resident_memory(step_path: Path, tokens: int, threads: int) -> dict[str, Any]:
    """Peak resident memory of streaming `tokens` tokens through `step_path`, measured in a child process.

    {"skipped": reason} where the platform cannot report it (it needs Linux's /proc/self/clear_refs).
    """
    if not (STATUS.is_file() and CLEAR_REFS.exists()):
        return {"skipped": "peak resident memory needs Linux (/proc/self/status and /proc/self/clear_refs)"}
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the rnnedge package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "rnnedge.compare.resident", str(step_path), str(tokens), str(threads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RnnedgeError(f"measuring the resident memory of {step_path} failed: {exc}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RnnedgeError(f"measuring the resident memory of {step_path} failed: {last}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


if __name__ == "__main__":
    print(json.dumps(stream(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
