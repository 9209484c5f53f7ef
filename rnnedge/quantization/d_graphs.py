"""Load and check the fp32 / int8 step graphs a drift run compares (onnxruntime only, no torch)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnedge.errors import GraphError
from rnnedge.graphmeta import GRAPH_FILES, INPUT_IDS, INT8_FILES, LOGITS, GraphInfo, parse_metadata


@dataclass(frozen=True)
class StepGraph:
    """One loaded step graph: its session, what its metadata says and its input/output signature."""

    path: Path
    session: Any  # onnxruntime.InferenceSession
    info: GraphInfo
    signature: tuple[tuple[str, tuple[Any, ...]], ...]


def _signature(session: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    items = list(session.get_inputs()) + list(session.get_outputs())
    return tuple((i.name, tuple(d if isinstance(d, int) else "batch" for d in i.shape)) for i in items)


def load_step(path: Path, threads: int = 1) -> StepGraph:
    """Open one step graph; GraphError if it is missing, corrupt, not a step graph or lacks states."""
    from rnnedge.quantization.q_run import session as cpu_session

    if not path.is_file():
        raise GraphError(f"{path} not found")
    session = cpu_session(path, threads)
    info = parse_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    if info.kind != "step":
        raise GraphError(f"{path} is a {info.kind} graph, not a step graph")
    names_in = [i.name for i in session.get_inputs()]
    names_out = [o.name for o in session.get_outputs()]
    want_in = [INPUT_IDS] + [s.input for s in info.states]
    want_out = [LOGITS] + [s.output for s in info.states]
    if sorted(names_in) != sorted(want_in) or sorted(names_out) != sorted(want_out):
        raise GraphError(f"{path}: inputs/outputs {names_in}/{names_out} do not match its metadata")
    return StepGraph(path, session, info, _signature(session))


def _describe_difference(a: GraphInfo, b: GraphInfo) -> str:
    if a.config != b.config:
        keys = sorted(set(a.config) | set(b.config))
        diffs = [f"{k} {a.config.get(k)!r} vs {b.config.get(k)!r}" for k in keys if a.config.get(k) != b.config.get(k)]
        return "config differs: " + ", ".join(diffs)
    if a.vocab != b.vocab:
        return f"vocabularies differ ({len(a.vocab)} vs {len(b.vocab)} characters)"
    return (
        "state tensors differ: "
        + json.dumps([(s.name, s.width) for s in a.states])
        + " vs "
        + json.dumps([(s.name, s.width) for s in b.states])
    )


def check_pair(fp32: StepGraph, int8: StepGraph) -> None:
    """GraphError unless the int8 graph comes from the same model as the fp32 one."""
    if fp32.info.quantization is not None:
        raise GraphError(f"{fp32.path} is already quantized; drift compares a float graph with its int8 form")
    same = (
        fp32.info.config == int8.info.config
        and fp32.info.vocab == int8.info.vocab
        and fp32.info.states == int8.info.states
    )
    if not same:
        raise GraphError(
            f"{int8.path} comes from a different model than {fp32.path} ({_describe_difference(fp32.info, int8.info)})"
        )
    if sorted(fp32.signature) != sorted(int8.signature):
        raise GraphError(f"{int8.path} has different inputs/outputs (names or shapes) than {fp32.path}")


def open_pair(folder: Path, int8_path: Path | None = None, threads: int = 1) -> tuple[StepGraph, StepGraph]:
    """The fp32 step graph of an export folder and its int8 form, checked to belong together."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GraphError(f"{folder} is not a folder (expected an exported model folder)")
    fp32_path = folder / GRAPH_FILES["step"]
    if not fp32_path.is_file():
        raise GraphError(f"{folder} has no {GRAPH_FILES['step']} (export the model first: `rnnedge export`)")
    q_path = Path(int8_path) if int8_path is not None else folder / INT8_FILES["step"]
    if not q_path.is_file():
        if int8_path is not None:
            raise GraphError(f"int8 graph {q_path} not found")
        raise GraphError(f"{folder} has no {INT8_FILES['step']}; run `rnnedge quantize {folder}` first")
    fp32 = load_step(fp32_path, threads)
    int8 = load_step(q_path, threads)
    check_pair(fp32, int8)
    return fp32, int8
