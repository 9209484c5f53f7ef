"""`python -m tests.faults.slow_cli MARKER ROOT ARGS...`: `rnnedge ARGS` whose first file write under
ROOT stops half-way: it writes half the bytes, creates MARKER, then waits to be interrupted.

The interrupt tests send SIGINT or SIGTERM once MARKER exists, so the signal lands while a file is
half-written, every time (no sleep-and-hope). Writes go through Path.write_bytes / write_text.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from rnnedge.cli import main


def _pause_first_write(marker: Path, root: Path) -> None:
    real_bytes, real_text = Path.write_bytes, Path.write_text

    def pause(path: Path, data: bytes) -> None:
        real_bytes(path, data[: len(data) // 2])
        tmp = marker.with_name(marker.name + ".part")  # the test polls marker.exists(): it must appear whole
        tmp.write_text(str(path))
        os.replace(tmp, marker)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # interrupted here; give up after two minutes
            time.sleep(0.05)
        raise SystemExit("slow_cli: no signal came")

    def write_bytes(self: Path, data: Any) -> int:
        if root in self.absolute().parents and not marker.exists():
            pause(self, bytes(data))
        return real_bytes(self, data)

    def write_text(self: Path, data: str, encoding: str | None = None, errors: str | None = None, newline=None) -> int:
        if root in self.absolute().parents and not marker.exists():
            pause(self, data.encode(encoding or "utf-8"))
        return real_text(self, data, encoding, errors, newline)

    Path.write_bytes = write_bytes  # type: ignore[method-assign]
    Path.write_text = write_text  # type: ignore[method-assign]


if __name__ == "__main__":
    marker_arg, root_arg, *args = sys.argv[1:]
    _pause_first_write(Path(marker_arg), Path(root_arg).absolute())
    sys.argv = ["rnnedge", *args]
    main()
