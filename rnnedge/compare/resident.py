"""Peak resident memory of a streaming session, read in a fresh Python process (so nothing else this
process did — torch, exports, other models — is in the figure).

The child imports the runtime (onnxruntime + NumPy), reads its peak resident set size (ru_maxrss),
opens a StepSession on the graph, streams `tokens` tokens through it one by one, and reads the peak
again. It prints one JSON line: the peak after the imports, after opening the session and after the
stream; `session_bytes` is the last minus the first (what the session and its stream added).

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


def _peak_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB on Linux


def stream(path: str, tokens: int, threads: int) -> dict[str, Any]:
    """Run in the child: open the step graph, stream `tokens` tokens, report the peaks (bytes)."""
    import numpy as np

    from rnnedge.runtime import StepSession

    after_import = _peak_bytes()
    session = StepSession(path, threads=threads)
    opened = _peak_bytes()
    ids = np.random.default_rng(0).integers(0, len(session.vocab), size=tokens)  # (tokens,)
    for token in ids.tolist():
        session.feed(token, copy=False)
    peak = _peak_bytes()
    return {
        "tokens": tokens,
        "after_import_bytes": after_import,
        "after_open_bytes": opened,
        "peak_bytes": peak,
        "session_bytes": peak - after_import,
    }


def resident_memory(step_path: Path, tokens: int, threads: int) -> dict[str, Any]:
    """Peak resident memory of streaming `tokens` tokens through `step_path`, measured in a child process.

    {"skipped": reason} where the platform cannot report it (no `resource` module, e.g. Windows).
    """
    try:
        import resource  # noqa: F401
    except ImportError:
        return {"skipped": "this platform has no resource.getrusage (peak resident memory)"}
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
