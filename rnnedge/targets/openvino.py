"""openvino: Intel's OpenVINO runtime (CPU plugin, in this process) running the exported ONNX graphs as they are.

`--provider openvino` (the `runtimes` extra: `pip install openvino`). The graph is read once and compiled
once per input shape, reshaped to that static shape (OpenVINO's CPU plugin is about 1.6x faster on a
static than on a dynamic-batch step graph); an IOBinding gets its own infer request with the bound arrays
as its tensors, so a StepSession's step copies nothing in or out.

Settings rnnedge fixes: `INFERENCE_PRECISION_HINT=f32` (the CPU plugin's default on a CPU with BF16,
e.g. AVX512_BF16 or AMX, is bf16: logits off by ~1e-2), `PERFORMANCE_HINT=LATENCY`, the thread count,
and `SNIPPETS_MODE=DISABLE` for a static shape compiled for one thread: the CPU plugin segfaults inside
`compile_model` (a snippets graph-rewrite pass) on step graphs reshaped to batch 1 with one inference
thread (seen on AVX2 AMD EPYC; ../shared/docs/reference.md, "Other runtimes"), which no Python code can
catch. A session config entry `openvino.<PROPERTY>` sets any other CPU plugin property (or overrides these).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnedge.errors import DependencyError, GraphError
from rnnedge.targets.foreign import ForeignSession, as_file, onnx_bytes
from rnnedge.targets.isa import cpu_flags, cpu_model, x86_isa
from rnnedge.targets.remote import RemoteBinding
from rnnedge.targets.spec import Availability, TargetSpec

HINT = "install it with `pip install 'rnnedge[runtimes]'` (or `pip install openvino`)"
PREFIX = "openvino."  # session config entries for the CPU plugin


def _probe() -> Availability:
    if importlib.util.find_spec("openvino") is None:
        return Availability(False, f"the openvino package is not installed; {HINT}")
    try:
        import openvino as ov

        name = ov.Core().get_property("CPU", "FULL_DEVICE_NAME")
    except Exception as exc:  # a broken install, a missing CPU plugin
        return Availability(False, f"openvino cannot use the CPU: {str(exc).splitlines()[0][:200]}")
    return Availability(True, f"OpenVINO {ov.get_version().split('-')[0]}, CPU plugin on {name}")


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, what OpenVINO's default thread count follows)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity API on this platform
        return os.cpu_count() or 1


class OpenVinoSession(ForeignSession):
    """An rnnedge graph in OpenVINO's CPU plugin: compiled per static input shape, on first use."""

    provider = "OpenVINO CPU"

    def __init__(self, source: Any, threads: int | None, config: Mapping[str, str] | None) -> None:
        import openvino as ov

        data = onnx_bytes(source, "OpenVINO")
        self._ov, self._core = ov, ov.Core()
        try:
            with as_file(data) as path:
                self._model = self._core.read_model(path)
        except Exception as exc:
            raise GraphError(f"OpenVINO cannot read the graph: {str(exc).strip().splitlines()[0][:300]}") from exc
        self._threads = threads
        self._extra = {k[len(PREFIX) :]: v for k, v in (config or {}).items() if k.startswith(PREFIX)}
        self._compiled: dict[tuple[tuple[int, ...], ...], Any] = {}
        self._requests: dict[tuple[tuple[int, ...], ...], Any] = {}
        self._options: dict[str, str] = {}
        super().__init__(data)
        names = {n for p in [*self._model.inputs, *self._model.outputs] for n in p.get_names()}
        missing = [a.name for a in [*self._inputs, *self._outputs] if a.name not in names]
        if missing:
            raise GraphError(f"OpenVINO's model lacks the graph's {', '.join(missing)}")

    def properties(self) -> dict[str, str]:
        """The CPU plugin properties a static-shape compile gets (see the module docstring)."""
        props = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if self._threads is not None:
            props["INFERENCE_NUM_THREADS"] = str(self._threads)
        if (self._threads or _usable_cpus()) == 1:  # one thread, asked for or all this process may use
            props["SNIPPETS_MODE"] = "DISABLE"  # the batch-1, one-thread compile_model segfault
        return {**props, **self._extra}

    def _compile(self, shapes: tuple[tuple[int, ...], ...]) -> Any:
        compiled = self._compiled.get(shapes)
        if compiled is None:
            model = self._model.clone()
            ports = zip(self._inputs, shapes, strict=True)
            model.reshape({a.name: self._ov.PartialShape(list(s)) for a, s in ports})
            self._options = self.properties()
            try:
                compiled = self._core.compile_model(model, "CPU", dict(self._options))
            except Exception as exc:
                why = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                raise GraphError(f"OpenVINO cannot compile the graph for shapes {list(shapes)}: {why}") from exc
            self._compiled[shapes] = compiled
        return compiled

    def _shapes(self, feed: Mapping[str, np.ndarray]) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(np.shape(feed[i.name])) for i in self._inputs)

    def _compute(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        shapes = self._shapes(feed)
        request = self._requests.get(shapes)
        if request is None:
            request = self._requests[shapes] = self._compile(shapes).create_infer_request()
        arrays = {i.name: np.ascontiguousarray(feed[i.name]) for i in self._inputs}
        try:
            request.infer(arrays)
        except Exception as exc:
            raise GraphError(f"OpenVINO: {str(exc).strip().splitlines()[0][:300]}") from exc
        return [request.get_tensor(o.name).data.copy() for o in self._outputs]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {self.provider: dict(self._options or self.properties())}

    def bind_numpy(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> RemoteBinding:
        """A binding whose own infer request reads and writes these arrays in place (shared memory)."""
        binding = RemoteBinding(inputs, outputs)
        request = self._compile(self._shapes(inputs)).create_infer_request()
        for name, arr in [*inputs.items(), *outputs.items()]:
            request.set_tensor(name, self._ov.Tensor(arr, shared_memory=True))
        binding.request = request  # type: ignore[attr-defined]
        return binding

    def run_with_iobinding(self, binding: RemoteBinding, run_options: Any = None) -> None:
        request = getattr(binding, "request", None)
        if request is None:
            super().run_with_iobinding(binding)
            return
        try:
            request.infer()
        except Exception as exc:
            raise GraphError(f"OpenVINO: {str(exc).strip().splitlines()[0][:300]}") from exc

    def close(self) -> None:
        """Release the compiled models and their requests."""
        self._requests.clear()
        self._compiled.clear()


def _open(source: Any, threads: int | None = None, config: Any = None, optimization: str = "all") -> OpenVinoSession:
    """`optimization` is ONNX Runtime's: OpenVINO applies its own graph passes whatever it says."""
    why = _probe()
    if not why.ok:
        raise DependencyError(f"openvino cannot run here: {why.reason}")
    return OpenVinoSession(os.fspath(source) if not isinstance(source, bytes) else source, threads, config)


def _describe() -> dict[str, Any]:
    version = ""
    if importlib.util.find_spec("openvino") is not None:
        import openvino as ov

        version = ov.get_version().split("-")[0]
    return {
        "cpu": cpu_model(),
        "isa": x86_isa(cpu_flags()),
        "runtime": f"openvino {version}".strip(),
        "emulated": False,
    }


SPEC = TargetSpec(
    name="openvino",
    summary="OpenVINO's CPU plugin in process (`runtimes` extra): the exported ONNX graphs as they are",
    device="host CPU, through OpenVINO",
    runs="host",
    probe=_probe,
    int8_path=lambda: "OpenVINO CPU plugin's own int8 kernels (oneDNN; VNNI/AMX where the CPU has them)",
    describe=_describe,
    open=_open,
    recipes=("int8-dynamic", "int8-qdq", "fp16", "int4-weight"),  # those run here (benchmarks/runtimes.py)
    reference="OpenVINO CPU plugin properties (INFERENCE_PRECISION_HINT, SNIPPETS_MODE); ../shared/docs/reference.md",
)
