"""StepSession's device path: state kept in GPU memory between tokens, and where ORT placed a graph.

With host NumPy buffers (runtime/step.py), ORT copies every state to the GPU and back on each token.
`DeviceStep` instead allocates the token ids, the logits and two sets of state tensors as ONNX Runtime
OrtValues on the session's device, and binds them set A -> set B and set B -> set A (ping-pong, as
StepSession does on the host): each step reads the state the previous step wrote, nothing returns
to the host but the ids going in, and logits come out only when asked (`logits()`).

CUDA graphs (`ProviderChoice("cuda", cuda_graph=True)`): ORT captures one graph per binding, told
apart by the run option `gpu_graph_id` (1 for A -> B, 2 for B -> A), and replays it on later runs.
A replay reads and writes the addresses it was captured with, which the fixed buffers guarantee; the
ids are written into their buffer in place. ORT's first call of each binding runs the graph more than
once (warm-up and capture); because a step never overwrites the state it reads, repeating it gives
the same result, which an in-place state update would not. ORT refuses CUDA graphs for a graph with
nodes outside the CUDA EP (see rnnedge.inference.placement), and the session then fails to open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.errors import GraphError
from rnnedge.graphmeta import INPUT_IDS, LOGITS
from rnnedge.inference import GraphSession, memcpy_nodes, output_dtype
from rnnedge.inference.providers import ProviderArg, session_device

GRAPH_IDS = ("1", "2")  # gpu_graph_id of the A -> B and B -> A bindings (0 is ORT's default; -1 disables)


class DeviceStep:
    """Ids, logits and two state sets of a step graph as OrtValues on `device` ('cuda', or 'cpu' in tests)."""

    def __init__(self, graph: GraphSession, batch: int, device: str, device_id: int = 0) -> None:
        self.session = graph.session
        self.info = graph.info
        self.device = device
        self.batch = batch
        self.cuda_graph = graph.cuda_graph

        def alloc(shape: tuple[int, ...], dtype: Any) -> ort.OrtValue:
            value = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.dtype(dtype).type, device, device_id)
            value.update_inplace(np.zeros(shape, dtype=dtype))  # device memory starts uninitialised
            return value

        self._ids_dtype = graph.ids_dtype  # int64, or int32 in a mobile-target graph
        self._ids = alloc((batch,), self._ids_dtype)  # (B,)
        self._logits = alloc((batch, len(self.info.vocab)), output_dtype(self.session, LOGITS))  # (B, V)
        self._sets = [[alloc(s.concrete_shape(batch), s.dtype) for s in self.info.states] for _ in range(2)]
        self._bindings = [self._bind(i) for i in range(2)]
        self._options: list[ort.RunOptions | None] = [None, None]
        if self.cuda_graph:
            for i, graph_id in enumerate(GRAPH_IDS):
                options = ort.RunOptions()
                options.add_run_config_entry("gpu_graph_id", graph_id)
                self._options[i] = options
        self._cur = 0  # index of the set holding the current state

    def _bind(self, src: int) -> ort.IOBinding:
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(INPUT_IDS, self._ids)
        binding.bind_ortvalue_output(LOGITS, self._logits)
        for s, a, b in zip(self.info.states, self._sets[src], self._sets[1 - src], strict=True):
            binding.bind_ortvalue_input(s.input, a)
            binding.bind_ortvalue_output(s.output, b)
        return binding

    def run(self, ids: np.ndarray) -> None:
        """One step for ids (B,): copies them in as the graph's id dtype, runs, and swaps the state sets;
        logits stay on the device."""
        self._ids.update_inplace(np.ascontiguousarray(ids, dtype=self._ids_dtype))
        self.session.run_with_iobinding(self._bindings[self._cur], self._options[self._cur])
        self._cur = 1 - self._cur

    def logits(self) -> np.ndarray:
        """The last step's logits (B, V), copied to the host."""
        return np.array(self._logits.numpy(), copy=True)

    def states(self) -> list[np.ndarray]:
        """The current state, copied to the host, in metadata order."""
        return [np.array(v.numpy(), copy=True) for v in self._sets[self._cur]]

    def set_states(self, arrays: list[np.ndarray]) -> None:
        """Overwrite the current state (arrays already checked against the contract) in place on the device."""
        for value, arr in zip(self._sets[self._cur], arrays, strict=True):
            value.update_inplace(np.ascontiguousarray(arr))

    def zero(self, stream: int | None = None) -> None:
        """Zero every stream's state, or stream `stream`'s only, in place on the device."""
        for s, value in zip(self.info.states, self._sets[self._cur], strict=True):
            if stream is None:
                host = np.zeros(s.concrete_shape(self.batch), dtype=np.dtype(s.dtype))  # (B, *dims)
            else:
                host = np.array(value.numpy(), copy=True)  # (B, *dims)
                host[stream] = 0
            value.update_inplace(host)


def device_step(graph: GraphSession, batch: int) -> DeviceStep | None:
    """A DeviceStep when the session's first provider computes in CUDA memory (CUDA, TensorRT); else None."""
    device, device_id = session_device(graph.session)
    if device == "cpu":
        return None
    return DeviceStep(graph, batch, device, device_id)


def memcpy_report(files: dict[str, dict[str, Path]], providers: ProviderArg) -> dict[str, Any]:
    """{variant: {kind: Memcpy counts}} for bench's graphs on `providers`; a graph ORT cannot write
    back (e.g. TensorRT's compiled nodes) gets {'error': why} instead."""
    out: dict[str, Any] = {}
    for variant, kinds in files.items():
        out[variant] = {}
        for kind, path in kinds.items():
            try:
                out[variant][kind] = memcpy_nodes(path, providers)
            except GraphError as exc:
                out[variant][kind] = {"error": str(exc)}
    return out
