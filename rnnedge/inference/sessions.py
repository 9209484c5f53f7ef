"""ONNX Runtime sessions for rnnedge graphs: options, loading, and the check against the graph's metadata."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.errors import GraphError, RnnedgeError
from rnnedge.graphio import io_mismatches
from rnnedge.graphmeta import INPUT_IDS, LOGITS, GraphInfo, parse_metadata
from rnnedge.inference.files import warn_if_changed
from rnnedge.inference.providers import ProviderArg, choice_entries, cuda_graph_enabled, routed_target
from rnnedge.io import display_name, read_regular

# ORT's type strings for the dtypes a state may have (graphmeta.STATE_DTYPES).
ORT_TYPES = {
    "float32": "tensor(float)",
    "float16": "tensor(float16)",
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
}
Source = str | os.PathLike[str] | bytes


def session_options(
    threads: int | None = None,
    config: dict[str, str] | None = None,
    spinning: bool = True,
    optimization: str = "all",
    optimized_model: str | os.PathLike[str] | None = None,
) -> ort.SessionOptions:
    """Sequential execution, `threads` intra-op threads (None: ORT's default), quiet logging.

    `config`: extra ORT session config entries; `spinning=False` stops idle threads from spinning
    (many tiny runs on a shared machine); `optimization`: 'all' | 'extended' | 'basic' | 'none';
    `optimized_model`: ORT writes the graph it will run there (after optimization and placement).
    """
    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    if optimization not in levels:
        raise RnnedgeError(f"optimization must be one of {', '.join(levels)}, got {optimization!r}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[optimization]
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise RnnedgeError(f"--threads must be a positive integer, got {threads!r}")
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # ORT's warnings are not the user's business
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    if optimized_model is not None:
        opts.optimized_model_filepath = str(optimized_model)
    return opts


def _describe(source: Source) -> str:
    return "the graph" if isinstance(source, bytes) else display_name(source)


MAX_GRAPH_BYTES = 2 << 30  # protobuf's own limit for one ONNX file


def _graph_bytes(path: Path, where: str) -> bytes:
    try:
        return read_regular(path, MAX_GRAPH_BYTES, "graph")
    except RnnedgeError as exc:
        raise GraphError(str(exc).replace(str(path), where)) from None
    except OSError as exc:
        raise GraphError(f"cannot read graph {where}: {exc.strerror or exc}") from None


def open_session(
    source: Source,
    providers: ProviderArg = None,
    threads: int | None = None,
    config: dict[str, str] | None = None,
    *,
    spinning: bool = True,
    tf32: bool = False,
    optimization: str = "all",
    optimized_model: str | os.PathLike[str] | None = None,
) -> ort.InferenceSession:
    """An InferenceSession for a file or serialized model; GraphError if ONNX Runtime cannot load it.

    `providers`: a name, a list of ORT provider names or a ProviderChoice (its options apply; `tf32`
    here turns TF32 on as well). `optimized_model`: see session_options. A routed target (an emulated
    CPU, `--provider cpu-arm64 | cpu-x86-avx2`; `qnn-htp`, the QNN EP; another runtime, `--provider
    openvino | tract`) returns what its spec's `open` makes (RemoteSession, targets/foreign.py, an ORT
    session on the QNN EP), with the same methods.
    """
    where = _describe(source)
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.is_file():
            raise GraphError(f"graph not found: {display_name(path)}")
        source = str(path)
        where = display_name(path)
        if where != source:  # a non-UTF-8 path ONNX Runtime cannot take: hand it the file's bytes
            source = _graph_bytes(path, where)
    target = routed_target(providers)
    if target is not None and target.open is not None:
        session_options(threads, config, spinning, optimization)  # the same argument checks as in process
        own = {**(config or {}), **({} if spinning else {"session.intra_op.allow_spinning": "0"})}
        return target.open(source, threads=threads, config=own, optimization=optimization)
    entries = choice_entries(providers, tf32)
    opts = session_options(threads, config, spinning, optimization, optimized_model)
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=entries)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GraphError(f"ONNX Runtime cannot load {where}: {first[:300]}") from exc


@dataclass(frozen=True, eq=False)
class GraphSession:
    """A loaded rnnedge graph: the ORT session, what its metadata says, and where it came from."""

    session: ort.InferenceSession
    info: GraphInfo
    source: str  # path, or "<bytes>"

    @functools.cached_property
    def cuda_graph(self) -> bool:
        """Whether the session captures and replays CUDA graphs (ProviderChoice(cuda_graph=True))."""
        return cuda_graph_enabled(self.session)

    @functools.cached_property
    def ids_dtype(self) -> np.dtype:
        """The token ids' dtype as the graph declares it: int64, or int32 (the mobile graph, `export --ids
        int32`); check_io has checked it against rnnedge.ids_dtype where the file records that."""
        ids = next(i for i in self.session.get_inputs() if i.name == INPUT_IDS)
        return np.dtype(np.int32) if ids.type == "tensor(int32)" else np.dtype(np.int64)

    @functools.cached_property
    def fixed_batch(self) -> int | None:
        """The batch a fixed-shape graph takes (the mobile and qnn-htp step graphs), None when symbolic."""
        ids = next(i for i in self.session.get_inputs() if i.name == INPUT_IDS)
        first = ids.shape[0] if ids.shape else None
        return first if isinstance(first, int) and first > 0 else None

    @property
    def state_inputs(self) -> list[str]:
        return [s.input for s in self.info.states]

    @property
    def outputs(self) -> list[str]:
        return [LOGITS, *(s.output for s in self.info.states)]

    def signature(self) -> tuple[tuple[str, str, tuple[Any, ...]], ...]:
        """(name, ORT type, shape) of every input and output: equal for two precisions of one graph
        unless a recipe changed the I/O dtypes."""
        items = [*self.session.get_inputs(), *self.session.get_outputs()]
        return tuple((a.name, a.type, tuple(d if isinstance(d, int) else str(d) for d in a.shape)) for a in items)

    def zero_states(self, batch: int) -> list[np.ndarray]:
        return zero_states(self.info, batch)

    def run(self, ids: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One call: (logits, new states) for ids ((B,) step or (B, T) parallel) and states in metadata order."""
        if self.cuda_graph:
            raise RnnedgeError(
                f"{self.source} was opened with CUDA graphs, which replay fixed device buffers; "
                "host arrays cannot be fed to it (StepSession binds device buffers)"
            )
        n, batch = self.fixed_batch, len(ids)
        if n is not None and batch != n and batch % n == 0:  # a fixed-batch graph: B streams, B/N calls
            parts = [self.run(ids[i : i + n], [s[i : i + n] for s in states]) for i in range(0, batch, n)]
            return np.concatenate([p[0] for p in parts]), [
                np.concatenate(s) for s in zip(*(p[1] for p in parts), strict=True)
            ]
        feed = dict(zip(self.state_inputs, states, strict=True))
        feed[INPUT_IDS] = np.ascontiguousarray(ids, dtype=self.ids_dtype)
        out = self.session.run(self.outputs, feed)
        return out[0], list(out[1:])


def graph_metadata(sess: ort.InferenceSession, where: str) -> dict[str, str]:
    """The graph's metadata_props; GraphError (one line) when ONNX Runtime cannot decode them (bytes
    that are not UTF-8: a damaged or foreign file, never one rnnedge wrote)."""
    try:
        return dict(sess.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError as exc:
        raise GraphError(
            f"{where}: its metadata is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "damaged, or not an rnnedge graph"
        ) from None


def zero_states(info: GraphInfo, batch: int) -> list[np.ndarray]:
    """The zero initial state of every state tensor, in metadata order, with its own shape and dtype."""
    return [np.zeros(s.concrete_shape(batch), dtype=np.dtype(s.dtype)) for s in info.states]


def check_io(sess: ort.InferenceSession, info: GraphInfo, source: str) -> None:
    """GraphError unless the session's inputs/outputs are exactly what the metadata declares."""
    inputs = {i.name: i for i in sess.get_inputs()}
    outputs = {o.name: o for o in sess.get_outputs()}
    want_in = [INPUT_IDS, *(s.input for s in info.states)]
    want_out = [LOGITS, *(s.output for s in info.states)]
    if sorted(inputs) != sorted(want_in) or sorted(outputs) != sorted(want_out):
        raise GraphError(
            f"{source}: inputs/outputs {sorted(inputs)} -> {sorted(outputs)} do not match its metadata "
            f"({want_in} -> {want_out})"
        )
    for s in info.states:
        for arg in (inputs[s.input], outputs[s.output]):
            if arg.type != ORT_TYPES[s.dtype]:
                raise GraphError(f"{source}: {arg.name} is {arg.type} but its metadata says {s.dtype}")
            fixed = [d for d in arg.shape[1:]]
            if len(arg.shape) != len(s.shape) or any(
                isinstance(g, int) and g != w for g, w in zip(fixed, s.shape[1:], strict=True)
            ):
                raise GraphError(f"{source}: {arg.name} has shape {arg.shape} but its metadata says {list(s.shape)}")
    vocab_dim = outputs[LOGITS].shape[-1]
    if isinstance(vocab_dim, int) and vocab_dim != len(info.vocab):
        raise GraphError(f"{source}: logits have {vocab_dim} entries but the vocabulary has {len(info.vocab)}")
    names = {v: k for k, v in ORT_TYPES.items()}
    declared = {a.name: (names.get(a.type, a.type), tuple(a.shape)) for a in [*inputs.values(), *outputs.values()]}
    problems = io_mismatches(info, declared, strict=False)  # the ids dtype and a fixed batch, where recorded
    if problems:
        raise GraphError(f"{source}: {problems[0]}")


def open_graph(
    source: Source,
    kind: str | None = None,
    providers: ProviderArg = None,
    threads: int | None = None,
    config: dict[str, str] | None = None,
    *,
    spinning: bool = True,
    tf32: bool = False,
    optimization: str = "all",
) -> GraphSession:
    """Load an rnnedge graph (file or bytes), parse its metadata and check its I/O against it.

    `kind` ('step' | 'parallel'), when given, must match the graph's own kind.
    """
    sess = open_session(source, providers, threads, config, spinning=spinning, tf32=tf32, optimization=optimization)
    where = _describe(source)
    info = parse_metadata(graph_metadata(sess, where), source=where)
    if kind is not None and info.kind != kind:
        other = "parallel.onnx" if kind == "parallel" else "step.onnx"
        raise GraphError(f"{where} is a {info.kind} graph; this needs a {kind} graph ({other})")
    check_io(sess, info, where)
    if not isinstance(source, bytes):
        warn_if_changed(source)  # a graph rewritten since the export loads, with one warning line
    return GraphSession(sess, info, "<bytes>" if isinstance(source, bytes) else str(source))
