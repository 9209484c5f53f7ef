"""litert: Google's LiteRT (TensorFlow Lite) interpreter in this process, running the `.tflite` step graph
that `rnnedge export --target litert` writes in the export's `litert/` folder.

Two parts, installed apart:
  runtime    `ai-edge-litert` (the `litert` extra: `pip install 'rnnedge[litert]'`; NumPy its only heavy
             dependency): `--provider litert` on eval, generate, bench and drift runs `litert/step.tflite`.
  converter  TensorFlow + onnx2tf, too heavy (and too pinned) for rnnedge's own environment: a Python of its
             own, reached by a subprocess running exporter/litert_convert.py. rnnedge takes the first of
             $RNNEDGE_LITERT_PYTHON, this Python when it has tensorflow and onnx2tf, and the venv that
             `rnnedge targets setup litert` builds in $RNNEDGE_CACHE/litert (targets/litert_setup.py).

A `.tflite` carries neither the vocabulary nor the state layout, and its inputs come in its own order, so
each `step*.tflite` has a sidecar `step*.json` beside it (exporter/litert.py): the ONNX graph's metadata,
the inputs and outputs (ONNX name, signature name, dtype, fixed shape, in the .tflite's own order), the ids
dtype. `open` takes the `.tflite`, or an `.onnx` path with a `.tflite` of the same stem beside it (what
`--provider litert` gets from an export folder); session config `litert.variant=int8` picks step.int8.tflite.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import DependencyError, GraphError
from rnnedge.targets.foreign import ORT_TYPE
from rnnedge.targets.isa import cpu_flags, cpu_model, x86_isa
from rnnedge.targets.remote import RemoteArg, RemoteMeta, SessionStandIn
from rnnedge.targets.spec import Availability, TargetSpec

RUNTIME = "ai-edge-litert"
HINT = "install it with `pip install 'rnnedge[litert]'` (or `pip install ai-edge-litert`)"
CONVERTER_HINT = "run `rnnedge targets setup litert` (or set RNNEDGE_LITERT_PYTHON: a Python with tensorflow + onnx2tf)"
PYTHON_ENV = "RNNEDGE_LITERT_PYTHON"
SIDECAR_FORMAT = 1


def runtime_version() -> str | None:
    try:
        return metadata.version(RUNTIME)
    except metadata.PackageNotFoundError:
        return None


def setup_python() -> Path:
    """Where `rnnedge targets setup litert` puts the converter's Python."""
    from rnnedge.targets.arm64_sysroot import cache_root

    return cache_root() / "litert" / "venv" / "bin" / "python"


def converter_python() -> str | None:
    """The Python that runs the converter (see the module docstring), or None when there is none."""
    given = os.environ.get(PYTHON_ENV)
    if given:
        return given
    if all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "onnx2tf")):
        return sys.executable
    own = setup_python()  # only a finished one: the stamp is written last
    return str(own) if own.is_file() and (own.parents[2] / "ready.json").is_file() else None


def _probe() -> Availability:
    version = runtime_version()
    if version is None or importlib.util.find_spec("ai_edge_litert") is None:
        return Availability(False, f"the {RUNTIME} package is not installed; {HINT}")
    python = converter_python()
    converter = f"converter: {python}" if python else f"no converter for `export --target litert`: {CONVERTER_HINT}"
    return Availability(True, f"LiteRT {version} (ai_edge_litert interpreter, CPU, XNNPACK delegate); {converter}")


def read_sidecar(tflite: Path) -> dict[str, Any]:
    """The sidecar JSON beside a .tflite; GraphError when it is missing or not rnnedge's."""
    path = tflite.with_suffix(".json")
    if not path.is_file():
        raise GraphError(f"{tflite}: no sidecar {path.name} beside it (vocabulary, state layout, input order)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GraphError(f"{path}: not a readable sidecar: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or "inputs" not in data:
        raise GraphError(f"{path}: not an rnnedge LiteRT sidecar (format {SIDECAR_FORMAT})")
    return data


def tflite_path(source: Any, config: Mapping[str, str] | None = None) -> Path:
    """The .tflite a session source names: itself, or the same stem beside an .onnx (+ litert.variant)."""
    if isinstance(source, bytes):
        raise GraphError("LiteRT runs the .tflite file beside the graph: give a path, not serialized bytes")
    path = Path(source)
    variant = (config or {}).get("litert.variant", "")
    if path.suffix == ".onnx":
        path = path.with_suffix(f".{variant}.tflite" if variant and variant != "fp32" else ".tflite")
    if not path.is_file():
        raise GraphError(f"no LiteRT model {path} (write one with `rnnedge export ... --target litert`)")
    return path


class LiteRtSession(SessionStandIn):
    """A .tflite step graph in LiteRT's interpreter, with the I/O and metadata its sidecar declares."""

    provider = "LiteRT"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path, self.sidecar = path, read_sidecar(path)
        try:
            self._interp = Interpreter(model_path=str(path), num_threads=threads if threads else None)
            self._interp.allocate_tensors()
            runner = self._interp.get_signature_runner(self.sidecar.get("signature", "serving_default"))
            ins, outs = runner.get_input_details(), runner.get_output_details()
        except (ValueError, RuntimeError) as exc:
            raise GraphError(f"LiteRT cannot load {path}: {str(exc).strip().splitlines()[0][:300]}") from exc
        try:
            self._feed = [(a["name"], ins[a["tflite"]]["index"], np.dtype(a["dtype"])) for a in self.sidecar["inputs"]]
            self._fetch = [(a["name"], outs[a["tflite"]]["index"]) for a in self.sidecar["outputs"]]
        except KeyError as exc:
            raise GraphError(f"{path}: its sidecar names {exc} that the .tflite signature lacks") from exc
        onnx_io = self.sidecar.get("onnx_io", {})
        self._inputs = [RemoteArg(*a) for a in onnx_io.get("inputs", [])] or self._args(self.sidecar["inputs"])
        self._outputs = [RemoteArg(*a) for a in onnx_io.get("outputs", [])] or self._args(self.sidecar["outputs"])
        self._meta = RemoteMeta(dict(self.sidecar.get("metadata", {})))
        self._providers = [self.provider]
        self._output_names = [o.name for o in self._outputs]

    @staticmethod
    def _args(entries: list[dict[str, Any]]) -> list[RemoteArg]:
        return [RemoteArg(a["name"], ORT_TYPE.get(a["dtype"], "?"), list(a["shape"])) for a in entries]

    def run(self, names: Any, feed: Mapping[str, np.ndarray], run_options: Any = None) -> list:
        """The outputs `names` (None: all) for `feed` (ONNX names; ids cast to the .tflite's dtype)."""
        interp = self._interp
        try:
            for name, index, dtype in self._feed:
                interp.set_tensor(index, np.ascontiguousarray(feed[name], dtype=dtype))
            interp.invoke()
        except KeyError as exc:
            raise GraphError(f"LiteRT: missing input {exc}") from exc
        except (ValueError, RuntimeError) as exc:
            raise GraphError(f"LiteRT: {str(exc).strip().splitlines()[0][:300]}") from exc
        results = {name: interp.get_tensor(index) for name, index in self._fetch}
        wanted = list(names) if names else self._output_names
        unknown = [n for n in wanted if n not in results]
        if unknown:
            raise GraphError(f"LiteRT: the graph has no output(s) {', '.join(unknown)}")
        return [results[n] for n in wanted]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {self.provider: {"model": self.path.name}}

    def ops(self) -> dict[str, int]:
        """Op name (input dtypes) -> count in the loaded model: the check that int8 kernels are integer."""
        return op_counts(self._interp)


def op_counts(interp: Any) -> dict[str, int]:
    """`OP(dtype,...)` -> count over an interpreter's ops, each keyed by its inputs' dtypes."""
    tensors = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    counts: dict[str, int] = {}
    for op in interp._get_ops_details():
        dtypes = ",".join(sorted({tensors[i] for i in op["inputs"] if i >= 0 and i in tensors}))
        key = f"{op['op_name']}({dtypes})"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _open(source: Any, threads: int | None = None, config: Any = None, optimization: str = "all") -> LiteRtSession:
    """`optimization` is ONNX Runtime's: LiteRT runs the .tflite as converted."""
    why = _probe()
    if not why.ok:
        raise DependencyError(f"litert cannot run here: {why.reason}")
    return LiteRtSession(tflite_path(source, config), threads)


def _describe() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "isa": x86_isa(cpu_flags()),
        "runtime": f"ai-edge-litert {runtime_version() or ''}".strip(),
        "emulated": False,
    }


def _export(*args: Any, **kwargs: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    from rnnedge.exporter.litert import export_litert  # torch/onnx side: imported only when exporting

    return export_litert(*args, **kwargs)


SPEC = TargetSpec(
    name="litert",
    summary="LiteRT (TFLite) interpreter in process (`litert` extra): litert/step.tflite + its sidecar JSON",
    device="host CPU, through LiteRT (TFLite built-in kernels, XNNPACK delegate for float)",
    runs="host",
    probe=_probe,
    int8_path=lambda: "TFLite built-in int8 kernels (full-integer: FULLY_CONNECTED int8 x int8 -> int32)",
    describe=_describe,
    open=_open,
    export=_export,
    folder="litert",
    recipes=("litert-int8",),  # its own .tflite (exporter/litert_int8.py), not an ORT recipe: those are not for LiteRT
    reference="onnx2tf + TFLiteConverter full-integer quantization; ../shared/docs/reference.md, Other runtimes",
)
