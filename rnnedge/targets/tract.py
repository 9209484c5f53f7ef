"""tract: Sonos' pure-Rust ONNX runtime (its `tract` Python wheel, in this process) running the exported graphs.

`--provider tract` (the `runtimes` extra: `pip install tract`). tract loads an ONNX file as an
InferenceModel; rnnedge gives it every input's concrete shape and type, lets it type and optimize the
whole graph for that shape, and keeps the result per input shape (a step graph compiles once; a parallel
graph once per chunk length). tract computes on one thread here: `threads` is recorded, not applied.

What tract needs from a graph, and the exporter provides (exporter/portable.py): no symbolic `value_info`
contradicting the fixed shapes it is given (`Impossible to unify Sym(batch) with Val(1)`), Slice
bounds that stay inside [0, T] (tract does not clamp them as ONNX says; the doubling scan's `T - 2^k`
wrapped negative, aaren's head `m[:, :2^k]` ran past T), and Mods tract computes as ONNX does (0.23
takes `b mod a` when only the dividend is broadcast, and folds a scalar shape Mod with the dividend's
sign: the transformer's step graph aborted the process with a Rust panic, its window padding went
negative). The graph's metadata is read from the file: tract keeps it, but its Python API cannot
return string tensors, nor a shape-derived integer output: the transformer's parallel graph (its
position state is `pos + T`) does not run here (tests/test_runtimes.py records it).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnedge.errors import DependencyError, GraphError
from rnnedge.targets.foreign import ORT_TYPE, ForeignSession, as_file, onnx_bytes
from rnnedge.targets.isa import cpu_flags, cpu_model, x86_isa
from rnnedge.targets.spec import Availability, TargetSpec

HINT = "install it with `pip install 'rnnedge[runtimes]'` (or `pip install tract`)"
# tract's fact mnemonics <-> NumPy dtype names
TRACT_TYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32"}
TRACT_TYPES |= {"i8": "int8", "u8": "uint8", "bool": "bool"}
MNEMONIC = {v: k for k, v in TRACT_TYPES.items()}
CACHE = 8  # compiled shapes kept per session


def _probe() -> Availability:
    if importlib.util.find_spec("tract") is None:
        return Availability(False, f"the tract package is not installed; {HINT}")
    try:
        import tract

        version = tract.version()
    except Exception as exc:  # the wheel's native library does not load
        return Availability(False, f"tract does not load: {str(exc).splitlines()[0][:200]}")
    return Availability(True, f"tract {version} (CPU, one thread)")


def _why(exc: Exception) -> str:
    """tract's error chain without its Rust backtrace: the first line and the innermost cause."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if any(ln.startswith("Stack") for ln in lines):
        lines = lines[: next(i for i, ln in enumerate(lines) if ln.startswith("Stack"))]
    if not lines:
        return type(exc).__name__
    causes = [ln.split(": ", 1)[-1] for ln in lines[1:] if ln != "Caused by:"]
    return "; ".join([lines[0], causes[-1]] if causes else lines[:1])[:400]


class TractSession(ForeignSession):
    """An rnnedge graph in tract: typed and optimized per concrete input shape, on first use."""

    provider = "tract CPU"

    def __init__(self, source: Any, threads: int | None) -> None:
        import tract

        self._tract = tract
        self._data = onnx_bytes(source, "tract")
        self._path = None if isinstance(source, bytes) else os.fspath(source)
        self._threads = threads
        self._runnables: dict[tuple[tuple[int, ...], ...], Any] = {}
        super().__init__(self._data)
        model = self._load()
        names = [model.input_name(i) for i in range(model.input_count())]
        if sorted(names) != sorted(i.name for i in self._inputs) or model.output_count() != len(self._outputs):
            raise GraphError(f"tract sees inputs {names} and {model.output_count()} outputs; the graph declares others")
        self._inputs = [next(a for a in self._inputs if a.name == n) for n in names]  # tract's input order

    def _load(self) -> Any:
        try:
            if self._path is not None:
                return self._tract.onnx().load(self._path)
            with as_file(self._data) as path:
                return self._tract.onnx().load(path)
        except Exception as exc:
            raise GraphError(f"tract cannot load the graph: {_why(exc)}") from exc

    def _runnable(self, feed: Mapping[str, np.ndarray]) -> Any:
        shapes = tuple(tuple(np.shape(feed[i.name])) for i in self._inputs)
        runnable = self._runnables.get(shapes)
        if runnable is not None:
            return runnable
        model = self._load()
        try:
            for k, (arg, shape) in enumerate(zip(self._inputs, shapes, strict=True)):
                kind = MNEMONIC[np.dtype(feed[arg.name].dtype).name]
                model.set_input_fact(k, ",".join([*(str(d) for d in shape), kind]))
            runnable = model.into_model().into_runnable()
        except KeyError as exc:
            raise GraphError(f"tract: inputs of dtype {exc} are not supported") from exc
        except Exception as exc:
            raise GraphError(f"tract cannot compile the graph for shapes {list(shapes)}: {_why(exc)}") from exc
        if len(self._runnables) >= CACHE:
            self._runnables.pop(next(iter(self._runnables)))
        self._runnables[shapes] = runnable
        return runnable

    def _compute(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        arrays = [np.ascontiguousarray(feed[i.name]) for i in self._inputs]
        for arr, arg in zip(arrays, self._inputs, strict=True):
            if ORT_TYPE.get(arr.dtype.name) != arg.type:
                raise GraphError(f"tract: {arg.name} is {arg.type}, got {arr.dtype.name}")
        runnable = self._runnable(dict(zip((i.name for i in self._inputs), arrays, strict=True)))
        try:
            return [t.to_numpy() for t in runnable.run(arrays)]
        except Exception as exc:
            raise GraphError(f"tract: {_why(exc)}") from exc

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {self.provider: {"threads": "1", "requested_threads": str(self._threads)}}

    def close(self) -> None:
        """Release the compiled models."""
        self._runnables.clear()


def _open(source: Any, threads: int | None = None, config: Any = None, optimization: str = "all") -> TractSession:
    """`config` and `optimization` are ONNX Runtime's: tract optimizes every graph its own way."""
    why = _probe()
    if not why.ok:
        raise DependencyError(f"tract cannot run here: {why.reason}")
    return TractSession(source, threads)


def _describe() -> dict[str, Any]:
    version = ""
    if importlib.util.find_spec("tract") is not None:
        import tract

        version = tract.version()
    return {"cpu": cpu_model(), "isa": x86_isa(cpu_flags()), "runtime": f"tract {version}".strip(), "emulated": False}


SPEC = TargetSpec(
    name="tract",
    summary="tract (Sonos' Rust ONNX runtime) in process (`runtimes` extra): the exported ONNX graphs as they are",
    device="host CPU, through tract",
    runs="host",
    probe=_probe,
    int8_path=lambda: "tract's own int8 kernels (tract-linalg)",
    describe=_describe,
    open=_open,
    # those run here (benchmarks/runtimes.py); fp16 does not load: its Gemm gets f32 where it expects f16
    recipes=("int8-dynamic", "int8-qdq", "int4-weight"),
    reference="tract's ONNX loader (InferenceModel facts, into_model/into_runnable); ../shared/docs/reference.md",
)
