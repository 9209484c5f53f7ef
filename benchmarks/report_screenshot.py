"""Screenshot a report page in headless Chromium at a given width (does every column fit?).

    apt-get install chromium                     # Debian's; no network needed at run time
    python benchmarks/report_screenshot.py runs/drift/report.html docs/img/drift_report_1280.png [--width 1280]

Chromium runs with the flags a closed network needs (no background networking, a fresh profile).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1400)
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("no chromium on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="rnnedge-chromium-") as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={args.width},{args.height}"]
        cmd += [f"--screenshot={args.png.resolve()}", args.page.resolve().as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    print(f"wrote {args.png} ({args.width} px wide)")


if __name__ == "__main__":
    main()
