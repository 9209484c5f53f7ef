"""ONNX Runtime's .ort format + the required-operators config for a minimal ORT build (--ort-format).

Converted with onnxruntime.tools.convert_onnx_models_to_ort (optimization style Fixed, level 'all',
as ORT's mobile docs recommend for CPU targets), then each .ort file is run against its .onnx source.
Build a minimal runtime with: build.sh --minimal_build --include_ops_by_config required_operators.config
"""

from __future__ import annotations

import contextlib
import io
import logging
import pathlib
import tempfile
from typing import Any

import numpy as np

from rnnedge.errors import RnnedgeError, VerificationError
from rnnedge.exporter import verify as vfy

CONFIG_NAME = "required_operators.config"
# ONNX Runtime's type names of the state dtypes graphmeta allows, for the parity check's random states.
STATE_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


def _parity(onnx_bytes: bytes, ort_bytes: bytes, kind: str) -> float:
    a, b = vfy.session(onnx_bytes), vfy.session(ort_bytes)
    rng = np.random.default_rng(7)
    feeds: dict[str, np.ndarray] = {}
    for inp in a.get_inputs():
        if inp.name == "input_ids":
            shape = (2, 37) if kind == "parallel" else (2,)
            feeds[inp.name] = rng.integers(0, 2, size=shape, dtype=np.int64)
        else:  # a state: batch 2, the rest of its fixed shape; positions count from zero
            shape = (2, *(int(d) for d in inp.shape[1:]))
            dtype = np.dtype(STATE_TYPES[inp.type])
            values = rng.standard_normal(shape) if dtype.kind == "f" else np.zeros(shape)
            feeds[inp.name] = values.astype(dtype)
    return vfy._diff(a.run(None, feeds), b.run(None, feeds))


def convert_to_ort(graphs: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """{"parallel": onnx bytes, ...} -> ({file name: bytes}, manifest entry). Raises if a .ort file disagrees."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with tempfile.TemporaryDirectory(prefix="rnnedge-ort-") as tmp:
        src, dst = pathlib.Path(tmp, "src"), pathlib.Path(tmp, "out")
        src.mkdir()
        for kind, data in graphs.items():
            (src / f"{kind}.onnx").write_bytes(data)
        try:
            logging.disable(logging.INFO)  # the tool logs each step at INFO through its own handler
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                convert_onnx_models_to_ort(src, dst, optimization_styles=[OptimizationStyle.Fixed])
        except Exception as exc:  # ORT's tool raises plain Exceptions on conversion failures
            raise RnnedgeError(f"ONNX Runtime could not convert the graphs to .ort format: {exc}") from exc
        finally:
            logging.disable(logging.NOTSET)
        files: dict[str, bytes] = {}
        parity: dict[str, float] = {}
        for kind, data in graphs.items():
            ort_path = dst / f"{kind}.ort"
            if not ort_path.is_file():
                raise RnnedgeError(f"ONNX Runtime wrote no {kind}.ort file")
            files[ort_path.name] = ort_path.read_bytes()
            parity[kind] = _parity(data, files[ort_path.name], kind)
        config = dst / CONFIG_NAME
        if not config.is_file():
            raise RnnedgeError(f"ONNX Runtime wrote no {CONFIG_NAME}")
        lines = [ln.replace(str(dst) + "/", "") for ln in config.read_text().splitlines()]
    bad = {k: v for k, v in parity.items() if not v <= vfy.TOLERANCE}
    if bad:
        raise VerificationError(f".ort graphs disagree with their .onnx sources: {bad}")
    files[CONFIG_NAME] = ("\n".join(lines) + "\n").encode()
    ops = [ln for ln in lines if ln and not ln.startswith("#")]
    entry = {
        "files": sorted(files),
        "optimization": "Fixed, level all",
        "required_operators": ops,
        "max_abs_diff_vs_onnx": parity,
        "sizes": {name: len(blob) for name, blob in sorted(files.items())},
    }
    return files, entry
