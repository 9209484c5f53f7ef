"""`rnnedge targets setup litert`: the LiteRT converter's own venv (TensorFlow + onnx2tf), once, cached.

    rnnedge targets setup litert      # ~1.5 GB in $RNNEDGE_CACHE/litert/venv; later runs find it ready

TensorFlow pins protobuf/ml_dtypes/keras and weighs ~1 GB, so it never goes into rnnedge's environment: the
converter runs as a subprocess under this venv's Python (targets/litert.py: converter_python). onnx2tf is
installed without its dependencies (its wheel pins TensorFlow 2.19, NumPy 1.26 and onnx 1.19 exactly; the
versions below are the ones this conversion was verified with). The venv is built from the Python running
rnnedge (3.10-3.12: TensorFlow 2.21's wheels).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from rnnedge.errors import DependencyError
from rnnedge.io import write_text
from rnnedge.targets.litert import setup_python

PACKAGES = (
    "tensorflow-cpu==2.21.0",
    "tf-keras==2.21.0",
    "onnx==1.23.2",
    "onnxruntime==1.32.0",
    "onnx-graphsurgeon==0.6.1",
    "onnxsim",
    "sng4onnx",
    "psutil",
    "ai-edge-litert==2.3.0",
)
NO_DEPS = ("onnx2tf==1.29.24",)


def venv_root() -> Path:
    return setup_python().parents[1]


def ready() -> dict | None:
    """The stamp of a finished converter venv (its packages), or None."""
    stamp = venv_root().parent / "ready.json"
    try:
        return json.loads(stamp.read_text()) if stamp.is_file() else None
    except (OSError, ValueError):
        return None


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise DependencyError(f"{what} failed: {tail[0][:300]}")


def build(log: Callable[[str], None] = print) -> Path:
    """Build (or find) the converter venv; its Python. DependencyError naming the failing step."""
    python, wanted = setup_python(), [*PACKAGES, *NO_DEPS]
    stamp = ready()
    if stamp and stamp.get("packages") == wanted and python.is_file():
        log(f"litert converter ready: {python}")
        return python
    root = venv_root()
    (root.parent / "ready.json").unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    log(f"creating the converter venv {root} ...")
    _run([sys.executable, "-m", "venv", str(root)], "python -m venv")
    log("installing TensorFlow, onnx2tf and their tools (about 1.5 GB) ...")
    _run([str(python), "-m", "pip", "install", "-q", *PACKAGES], "pip install (converter packages)")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", *NO_DEPS], "pip install onnx2tf")
    _run([str(python), "-c", "import onnx2tf, tensorflow"], "importing onnx2tf and tensorflow in the venv")
    write_text(root.parent / "ready.json", json.dumps({"packages": wanted}))
    log(f"litert converter ready: {python}")
    return python
