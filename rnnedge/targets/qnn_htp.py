"""qnn-htp: Qualcomm's Hexagon NPU (HTP backend), run here on the x86_64 HTP simulator that ships in the
PyPI wheel `onnxruntime-qnn` 2.7.0 (QNN SDK 2.51; a plugin execution provider for onnxruntime >= 1.24.2).

This is Qualcomm's simulator of the Hexagon NPU, not a phone: it computes what the HTP computes (its
quantized kernels, its fp16 mode), slowly (~10 steps/s). The graph is the step graph in the export's
`qnn-htp/` folder (`rnnedge export --target qnn-htp`: batch fixed, no Erf, no scalar-base Pow), and
its variants are fully quantized QDQ graphs (`a16w8`, `a8w8`: the recurrent state quantized too) or
the float graph run in the HTP's fp16 mode (`htp-fp16`). Every session disables the CPU fallback, so a
node the NPU cannot take is an error naming it, never a silent CPU run.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from rnnedge.targets.spec import Availability, TargetSpec
from rnnedge.tool_output import tool_output

EP = "QNNExecutionProvider"
WHEEL = "onnxruntime-qnn"
HINT = "install it with `pip install 'rnnedge[npu]'` (onnxruntime-qnn 2.7.0; x86_64 Linux or Windows)"
NO_FALLBACK = {"session.disable_cpu_ep_fallback": "1"}
HTP_OPTIONS = {"backend_type": "htp"}
# fp16 mode: the session is refused without a SoC model; 57 with HTP v75 (Snapdragon 8 Gen 3) is one the
# simulator accepts (reference.md).
FP16_OPTIONS = {"enable_htp_fp16_precision": "1", "soc_model": "57", "htp_arch": "75"}
FP16_RECIPE = "HtpFp16"  # the recipe type whose variants run in the HTP's fp16 mode
UNSUPPORTED = re.compile(r"name: ([^,\s]+), type: (\w+) \}")  # "Unsupported nodes in QNN EP: {...}"
PLACED = re.compile(r"^\s+(\w+) \((.*)\)\s*$")  # "  Erf (node name)" under "Node(s) placed on [CPU...]"
COMPOSE_FAILED = re.compile(r"failed for node `([^`]+)` of type `(\w+)`")  # "QNN.graphAddNode() failed ..."


def _wheel_version() -> str | None:
    try:
        return metadata.version(WHEEL)
    except metadata.PackageNotFoundError:
        return None


@cache
def _devices() -> tuple[Any, ...]:
    """The QNN EP's devices, registering its library once per process (ORT refuses a second registration)."""
    import onnxruntime as ort
    import onnxruntime_qnn as oq

    if not any(d.ep_name == EP for d in ort.get_ep_devices()):
        ort.register_execution_provider_library(EP, oq.get_library_path())
    return tuple(d for d in ort.get_ep_devices() if d.ep_name == EP)


@cache
def _probe() -> Availability:
    version = _wheel_version()
    if version is None:
        return Availability(False, f"{WHEEL} is not installed; {HINT}")
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return Availability(False, f"the HTP simulator in {WHEEL} runs on x86_64 Linux, not {platform.machine()}")
    try:
        devices = _devices()
    except Exception as exc:  # the EP library fails to load (missing system libraries, ORT too old)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return Availability(False, f"{WHEEL} {version}: its EP library does not register: {first}")
    if not devices:
        return Availability(False, f"{WHEEL} {version}: the QNN EP registered but lists no device")
    return Availability(True, f"{WHEEL} {version}: QNN HTP simulator (x86_64), {len(devices)} device(s)")


def _is_fp16_variant(source: Any) -> bool:
    """True when the graph is an `HtpFp16` variant (its recipe metadata says so)."""
    import json

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        meta = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception:  # a compiled context binary (EPContext nodes) loads on the QNN EP only
        return False
    recipe = meta.custom_metadata_map.get("rnnedge.recipe", "")
    try:
        return bool(recipe) and json.loads(recipe).get("type") == FP16_RECIPE
    except ValueError:
        return False


def provider_options(fp16: bool = False, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The QNN EP options rnnedge sets: the HTP backend, fp16 mode for float graphs, plus `extra`."""
    return {**HTP_OPTIONS, **(FP16_OPTIONS if fp16 else {}), **(extra or {})}


def open_session(
    source: Any,
    threads: int | None = None,
    config: dict[str, str] | None = None,
    optimization: str = "all",
    *,
    fp16: bool | None = None,
    options: dict[str, str] | None = None,
) -> Any:
    """An ORT InferenceSession of `source` on the HTP, CPU fallback disabled (a node the HTP cannot take
    is an error naming it). `fp16=None`: the HTP's fp16 mode when the graph is an htp-fp16 variant.
    `options`: more QNN EP provider options; `config`: session config entries (e.g. `ep.context_enable=1`
    and `ep.context_file_path` write the compiled context binary)."""
    import onnxruntime as ort

    from rnnedge.errors import DependencyError, GraphError
    from rnnedge.inference.sessions import session_options

    why = _probe()
    if not why.ok:
        raise DependencyError(f"qnn-htp cannot run here: {why.reason}")
    opts = session_options(threads, {**(config or {}), **NO_FALLBACK}, True, optimization)
    use_fp16 = _is_fp16_variant(source) if fp16 is None else fp16
    opts.add_provider_for_devices(list(_devices()), provider_options(use_fp16, options))
    if not isinstance(source, bytes):
        source = os.path.abspath(source)  # the session is made inside a scratch folder
    with tempfile.TemporaryDirectory(prefix="rnnedge-qnn-") as tmp, tool_output(Path(tmp)) as log:
        try:
            return ort.InferenceSession(source, sess_options=opts)
        except Exception as exc:
            failure = exc
    # The QNN EP logs which nodes it could not take; the exception itself only says that some could not.
    nodes = dict.fromkeys(f"{op} {name}" for name, op in UNSUPPORTED.findall(log.text))
    nodes |= dict.fromkeys(f"{op} {name} (QNN {qnn})" for name, qnn, op in _composed(log.text))
    if not nodes and "fallback to CPU EP has been explicitly disabled" in str(failure):
        nodes = dict.fromkeys(_cpu_placed(source, use_fp16, options))
    text = " ".join(str(failure).split())
    what = "the graph" if isinstance(source, bytes) else str(source)
    named = f"; nodes the HTP cannot take: {', '.join(list(nodes)[:6])}" if nodes else ""
    raise GraphError(f"the HTP (QNN EP, CPU fallback off) cannot run {what}{named} ({text[:300]})") from failure


def _cpu_placed(source: Any, fp16: bool, options: dict[str, str] | None) -> list[str]:
    """The nodes ONNX Runtime places on the CPU EP beside the HTP (a diagnosis session with fallback
    allowed and verbose placement logging): "OpType (node name)" each, or one line when all are."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 0
    opts.add_provider_for_devices(list(_devices()), provider_options(fp16, options))
    quiet = contextlib.suppress(Exception)  # the diagnosis only reads the log
    with tempfile.TemporaryDirectory(prefix="rnnedge-qnn-") as tmp, tool_output(Path(tmp)) as log, quiet:
        ort.InferenceSession(source, sess_options=opts)
    found, inside = [], False
    for line in log.text.splitlines():
        if "placed on [" in line:
            inside = "[CPUExecutionProvider]" in line and "Node(s)" in line
            if "All nodes placed on [CPUExecutionProvider]" in line:
                return [f"every node ({line.rsplit(':', 1)[-1].strip()})"]
            continue
        match = PLACED.match(line) if inside else None
        if match:
            found.append(f"{match.group(1)} {match.group(2)}")
        elif inside and line.strip():
            inside = False
    return found


def _composed(log: str) -> list[tuple[str, str, str]]:
    """(node, QNN op, ONNX op) for each `graphAddNode() failed for node` line, the ONNX op read from the name."""
    return [(name, qnn, name.rsplit("/", 1)[-1].split("_")[0]) for name, qnn in COMPOSE_FAILED.findall(log)]


def _export(*args: Any, **kwargs: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    from rnnedge.exporter.qnn_htp import export_htp  # torch/onnx side: imported only when exporting

    return export_htp(*args, **kwargs)


def _describe() -> dict[str, Any]:
    return {"cpu": f"Qualcomm HTP simulator ({WHEEL} {_wheel_version() or 'absent'})", "simulated": True}


SPEC = TargetSpec(
    name="qnn-htp",
    summary="Qualcomm Hexagon NPU (HTP) on Qualcomm's x86_64 simulator from onnxruntime-qnn; graphs in qnn-htp/",
    device="Qualcomm Hexagon NPU (HTP), simulated on x86_64 by the QNN SDK",
    runs="host",
    probe=_probe,
    int8_path=lambda: "HTP fixed point (QDQ: uint8/uint16 activations, uint8 weights, state quantized)",
    describe=_describe,
    providers=(EP,),
    provider_options={EP: HTP_OPTIONS},
    session_config=NO_FALLBACK,
    open=open_session,
    export=_export,
    folder="qnn-htp",
    recipes=("a16w8", "a8w8", "htp-fp16"),
    tolerance=1e-4,
    reference="onnxruntime-qnn 2.7.0 (QNN SDK 2.51) HTP simulator; ../shared/docs/reference.md, Qualcomm Hexagon NPU",
)
