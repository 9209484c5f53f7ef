"""Loading rnnedge graphs into ONNX Runtime (torch-free, onnx-free): files, providers, metadata."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from rnnedge.errors import DependencyError, GraphError, RnnedgeError
from rnnedge.graphmeta import GRAPH_FILES, INPUT_IDS, INT8_FILES, LOGITS, GraphInfo, parse_metadata

# --provider names -> ONNX Runtime execution providers (most preferred first; CPU is always the fallback).
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
GPU_HINT = "install the GPU build with `pip install 'rnnedge[gpu]'` (onnxruntime-gpu, on a CUDA machine)"


def resolve_providers(providers: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """`None`/'cpu'/'cuda'/'tensorrt' or a list of ORT provider names -> providers this onnxruntime has.

    A requested GPU provider that this onnxruntime build lacks raises DependencyError naming what is there.
    """
    available = ort.get_available_providers()
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        key = providers.lower()
        if key not in PROVIDERS:
            raise RnnedgeError(f"unknown provider {providers!r}; choose one of {', '.join(PROVIDERS)}")
        wanted = PROVIDERS[key]
    else:
        wanted = list(providers)
    missing = [p for p in wanted[:1] if p not in available]
    if missing:
        raise DependencyError(
            f"execution provider {missing[0]} is not in this onnxruntime build "
            f"(available: {', '.join(available)}); {GPU_HINT}"
        )
    return [p for p in wanted if p in available]


def session_options(threads: int | None, config: dict[str, str] | None = None) -> ort.SessionOptions:
    """Sequential execution, full graph optimisation, `threads` intra-op threads (None: ORT default).

    `config`: extra ORT session config entries, e.g. {"session.intra_op.allow_spinning": "0"}.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise RnnedgeError(f"threads must be a positive integer, got {threads!r}")
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # warnings from ORT are not the user's business
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    return opts


def graph_path(path: str | os.PathLike[str], kind: str, int8: bool = False) -> Path:
    """An export folder -> its (int8) `kind` graph; a file path is returned as is. GraphError if missing."""
    p = Path(path)
    if p.is_dir():
        name = (INT8_FILES if int8 else GRAPH_FILES)[kind]
        target = p / name
        if not target.is_file():
            hint = " (run `rnnedge quantize` first)" if int8 else " (is it an `rnnedge export` folder?)"
            raise GraphError(f"{p} has no {name}{hint}")
        return target
    if not p.exists():
        raise GraphError(f"graph not found: {p}")
    return p


def load_session(
    path: str | os.PathLike[str],
    kind: str,
    providers: str | list[str] | None = None,
    threads: int | None = None,
    config: dict[str, str] | None = None,
) -> tuple[ort.InferenceSession, GraphInfo]:
    """An InferenceSession for an rnnedge graph of `kind` ('step' | 'parallel'), checked against its metadata."""
    p = Path(path)
    if not p.is_file():
        raise GraphError(f"graph not found: {p}")
    names = resolve_providers(providers)
    try:
        sess = ort.InferenceSession(str(p), sess_options=session_options(threads, config), providers=names)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GraphError(f"{p} is not a loadable ONNX graph: {first[:300]}") from exc
    info = parse_metadata(sess.get_modelmeta().custom_metadata_map, source=str(p))
    if info.kind != kind:
        other = "parallel.onnx" if kind == "parallel" else "step.onnx"
        raise GraphError(f"{p} is a {info.kind} graph; this needs a {kind} graph ({other})")
    _check_io(sess, info, str(p))
    return sess, info


def _check_io(sess: ort.InferenceSession, info: GraphInfo, source: str) -> None:
    inputs = [i.name for i in sess.get_inputs()]
    outputs = [o.name for o in sess.get_outputs()]
    want_in = [INPUT_IDS, *(s.input for s in info.states)]
    want_out = [LOGITS, *(s.output for s in info.states)]
    if sorted(inputs) != sorted(want_in) or sorted(outputs) != sorted(want_out):
        raise GraphError(
            f"{source}: inputs/outputs {inputs} -> {outputs} do not match its metadata ({want_in} -> {want_out})"
        )
    vocab_dim = sess.get_outputs()[outputs.index(LOGITS)].shape[-1]
    if isinstance(vocab_dim, int) and vocab_dim != len(info.vocab):
        raise GraphError(f"{source}: logits have {vocab_dim} entries but the vocabulary has {len(info.vocab)}")
