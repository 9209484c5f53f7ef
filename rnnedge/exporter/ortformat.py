"""ONNX Runtime's .ort format + the required-operators config for a minimal ORT build.

Converted with onnxruntime.tools.convert_onnx_models_to_ort at level 'all', in one of its two styles:
'fixed' (the optimizations are applied and saved: the CPU EP's own fused kernels, as ORT's docs
recommend for CPU targets; --ort-format) or 'runtime' (the graph keeps its standard ops and the CPU
optimizations are saved to be replayed, so NNAPI/CoreML can still take the nodes; the mobile target).
Each .ort file is run against its .onnx source. One config covers every graph converted together.
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
from rnnedge.graphmeta import INPUT_IDS

CONFIG_NAME = "required_operators.config"
STYLES = ("fixed", "runtime")
# ONNX Runtime's type names of the dtypes a graph input may have (token ids; states as graphmeta allows).
INPUT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


def _parity(onnx_bytes: bytes, ort_bytes: bytes) -> float:
    """Max abs difference of the two on random inputs (symbolic dims: batch 2 first, time 37 after)."""
    a, b = vfy.session(onnx_bytes), vfy.session(ort_bytes)
    rng = np.random.default_rng(7)
    feeds: dict[str, np.ndarray] = {}
    for inp in a.get_inputs():
        shape = [d if isinstance(d, int) else (2 if i == 0 else 37) for i, d in enumerate(inp.shape)]
        dtype = np.dtype(INPUT_TYPES[inp.type])
        if inp.name == INPUT_IDS:
            feeds[inp.name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:  # a state: float states random, integer ones (positions) count from zero
            values = rng.standard_normal(shape) if dtype.kind == "f" else np.zeros(shape)
            feeds[inp.name] = values.astype(dtype)
    return vfy._diff(a.run(None, feeds), b.run(None, feeds))


def _portable(lines: list[str], suffix: str) -> list[str]:
    """The config without the temp folders it names (its '# - model' comment lines list file names)."""
    out: list[str] = []
    for line in lines:
        if line.startswith("# - "):
            line = "# - " + pathlib.PurePath(line[4:].strip()).name.replace(suffix, "")
        if line not in out:
            out.append(line)
    return out


def convert_to_ort(graphs: dict[str, bytes], style: str = "fixed") -> tuple[dict[str, bytes], dict[str, Any]]:
    """{"parallel": onnx bytes, ...} -> ({"parallel.ort": ..., CONFIG_NAME: ...}, manifest entry).

    Keys are file stems ("step", "step.int8-qdq"); raises if a .ort file disagrees with its source."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    if style not in STYLES:
        raise RnnedgeError(f"unknown .ort optimization style {style!r}; one of {', '.join(STYLES)}")
    opt_style = OptimizationStyle.Runtime if style == "runtime" else OptimizationStyle.Fixed
    suffix = ".with_runtime_opt" if style == "runtime" else ""
    with tempfile.TemporaryDirectory(prefix="rnnedge-ort-") as tmp:
        src, dst = pathlib.Path(tmp, "src"), pathlib.Path(tmp, "out")
        src.mkdir()
        for name, data in graphs.items():
            (src / f"{name}.onnx").write_bytes(data)
        try:
            logging.disable(logging.INFO)  # the tool logs each step at INFO through its own handler
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                convert_onnx_models_to_ort(src, dst, optimization_styles=[opt_style])
        except Exception as exc:  # ORT's tool raises plain Exceptions on conversion failures
            raise RnnedgeError(f"ONNX Runtime could not convert the graphs to .ort format: {exc}") from exc
        finally:
            logging.disable(logging.NOTSET)
        files: dict[str, bytes] = {}
        parity: dict[str, float] = {}
        for name, data in graphs.items():
            ort_path = dst / f"{name}{suffix}.ort"
            if not ort_path.is_file():
                raise RnnedgeError(f"ONNX Runtime wrote no {ort_path.name} file")
            files[f"{name}.ort"] = ort_path.read_bytes()
            parity[name] = _parity(data, files[f"{name}.ort"])
        config = dst / f"required_operators{suffix}.config"
        if not config.is_file():
            raise RnnedgeError(f"ONNX Runtime wrote no {config.name}")
        lines = _portable(config.read_text().splitlines(), suffix)
    bad = {k: v for k, v in parity.items() if not v <= vfy.TOLERANCE}
    if bad:
        raise VerificationError(f".ort graphs disagree with their .onnx sources: {bad}")
    files[CONFIG_NAME] = ("\n".join(lines) + "\n").encode()
    ops = [ln for ln in lines if ln and not ln.startswith("#")]
    entry = {
        "files": sorted(files),
        "optimization": f"{style.capitalize()}, level all",
        "required_operators": ops,
        "max_abs_diff_vs_onnx": parity,
        "sizes": {name: len(blob) for name, blob in sorted(files.items())},
    }
    return files, entry
