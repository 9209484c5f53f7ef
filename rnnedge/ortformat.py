"""ONNX Runtime's .ort format + the required-operators config for a minimal ORT build (torch-free).

Converted with onnxruntime.tools.convert_onnx_models_to_ort at level 'all', in one of its two styles:
'fixed' (the CPU EP's optimizations applied and saved, as ORT's docs recommend for CPU targets) or
'runtime' (the graph keeps its standard ops, the CPU optimizations are saved to be replayed, so
NNAPI/CoreML can still take the nodes: `rnnedge export --target mobile`). Then each .ort file is run
against its .onnx source.
The config lists the operators of every graph converted here plus any existing .ort files passed as
`also` (so one minimal runtime serves the fp32 graphs and every precision variant of an export).
Build a minimal runtime with: build.sh --minimal_build --include_ops_by_config required_operators.config
Used by `rnnedge export --ort-format` and by `rnnedge quantize` on such a folder.
"""

from __future__ import annotations

import pathlib
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnedge.errors import RnnedgeError, VerificationError
from rnnedge.inference import GraphSession, open_graph, open_session
from rnnedge.inference.providers import ProviderArg
from rnnedge.tool_output import tool_output

CONFIG_NAME = "required_operators.config"
TOLERANCE = 1e-4
STYLES = ("fixed", "runtime")


def ort_parity(onnx_bytes: bytes, ort_bytes: bytes, providers: ProviderArg = None) -> float:
    """Max abs difference between the .onnx and .ort graphs on random ids and states, both run on
    `providers` (None: this CPU; an emulated CPU target such as 'cpu-x86-avx2' runs them there)."""
    a = open_graph(onnx_bytes, providers=providers, threads=1)
    b = GraphSession(open_session(ort_bytes, providers, threads=1), a.info, "<ort>")
    rng = np.random.default_rng(7)
    first = a.session.get_inputs()[0].shape[0]
    batch = first if isinstance(first, int) else 2  # a fixed batch (mobile target: 1) or 2
    shape = (batch, min(37, a.info.max_seq_len or 37)) if a.info.kind == "parallel" else (batch,)  # within scan depth
    ids = rng.integers(0, len(a.info.vocab), size=shape, dtype=np.int64)
    states = [
        rng.standard_normal(z.shape).astype(z.dtype) if np.issubdtype(z.dtype, np.floating) else z
        for z in a.zero_states(batch)
    ]
    out_a, out_b = a.run(ids, states), b.run(ids, states)
    worst = 0.0
    for x, y in zip([out_a[0], *out_a[1]], [out_b[0], *out_b[1]], strict=True):
        diff = np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
    return worst


def _config(ort_files: Sequence[pathlib.Path], target: pathlib.Path) -> list[str]:
    """Write the required-operators config of `ort_files` to `target`; its lines, paths reduced to names."""
    from onnxruntime.tools.ort_format_model import create_config_from_models

    with tool_output(target.parent):
        create_config_from_models(list(ort_files), target, False)
    lines = target.read_text().splitlines()
    models = sorted(pathlib.Path(ln[4:]).name for ln in lines if ln.startswith("# - "))
    return [lines[0], *(f"# - {m}" for m in models), *(ln for ln in lines[1:] if not ln.startswith("# - "))]


def convert_to_ort(
    graphs: dict[str, bytes], also: Sequence[pathlib.Path] = (), tolerance: float = TOLERANCE, style: str = "fixed"
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """{stem: onnx bytes} (stem e.g. "step" or "step.int8-dynamic") -> ({file name: bytes}, manifest entry).

    The files are `<stem>.ort` per graph plus required_operators.config covering these graphs and the
    .ort files in `also`. Raises VerificationError if a .ort graph disagrees with its .onnx source.
    `style`: 'fixed' or 'runtime' (see the module docstring).
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    if style not in STYLES:
        raise RnnedgeError(f"unknown .ort optimization style {style!r}; one of {', '.join(STYLES)}")
    opt_style = OptimizationStyle.Runtime if style == "runtime" else OptimizationStyle.Fixed
    suffix = ".with_runtime_opt" if style == "runtime" else ""  # the tool's file-name mark for that style

    also = [pathlib.Path(p).resolve() for p in also]  # the tools run in a temp folder: relative paths would break
    with tempfile.TemporaryDirectory(prefix="rnnedge-ort-") as tmp:
        src, dst = pathlib.Path(tmp, "src"), pathlib.Path(tmp, "out")
        src.mkdir()
        for stem, data in graphs.items():
            (src / f"{stem}.onnx").write_bytes(data)
        try:
            with tool_output(pathlib.Path(tmp)) as out:
                convert_onnx_models_to_ort(src, dst, optimization_styles=[opt_style])
        except Exception as exc:  # ORT's tool raises plain Exceptions on conversion failures
            raise RnnedgeError(
                f"ONNX Runtime could not convert the graphs to .ort format: {exc} {out.last_line()}".strip()
            ) from exc
        files: dict[str, bytes] = {}
        parity: dict[str, float] = {}
        for stem, data in graphs.items():
            ort_path = dst / f"{stem}{suffix}.ort"
            if not ort_path.is_file():
                raise RnnedgeError(f"ONNX Runtime wrote no {ort_path.name} file")
            if suffix:
                ort_path = ort_path.rename(dst / f"{stem}.ort")
            files[ort_path.name] = ort_path.read_bytes()
            parity[stem] = ort_parity(data, files[ort_path.name])
        converted = [dst / name for name in files]
        lines = _config([*converted, *also], pathlib.Path(tmp, CONFIG_NAME))
    bad = {k: v for k, v in parity.items() if not v <= tolerance}
    if bad:
        raise VerificationError(f".ort graphs disagree with their .onnx sources: {bad}")
    files[CONFIG_NAME] = ("\n".join(lines) + "\n").encode()
    entry = {
        "files": sorted(files),
        "optimization": f"{style.capitalize()}, level all",
        "required_operators": [ln for ln in lines if ln and not ln.startswith("#")],
        "config_covers": sorted([*files.keys() - {CONFIG_NAME}, *(pathlib.Path(p).name for p in also)]),
        "max_abs_diff_vs_onnx": parity,
        "sizes": {name: len(blob) for name, blob in sorted(files.items())},
    }
    return files, entry
