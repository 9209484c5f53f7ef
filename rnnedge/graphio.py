"""What a graph declares vs what its metadata says (torch-free, onnx-free): the fixed-shape copies of a
graph (mobile/, qnn-htp/) and the ids dtype (`rnnedge export --ids`) must be told truthfully.

`fixed_shape_metadata` rewrites a graph's metadata for a copy with the batch fixed and/or the ids dtype
changed; `io_mismatches` lists where metadata and the graph's declared inputs/outputs disagree (the
exporter refuses to write such a graph; loading refuses a contradiction, graphmeta.GraphInfo).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from rnnedge.errors import GraphError
from rnnedge.graphmeta import BATCH, IDS_DTYPES, INPUT_IDS, PREFIX, GraphInfo

Declared = Mapping[str, tuple[str, tuple[int | str, ...]]]  # name -> (NumPy dtype name, shape)


def fixed_shape_metadata(meta: Mapping[str, str], batch: int | None, ids_dtype: str) -> dict[str, str]:
    """`meta` (a graph's metadata_props) for a copy of the graph whose batch is fixed to `batch` (None:
    left symbolic) and whose input_ids are `ids_dtype`: rnnedge.states' first dims, rnnedge.fixed_batch
    and rnnedge.ids_dtype then say what the graph declares."""
    if ids_dtype not in IDS_DTYPES:
        raise GraphError(f"ids dtype {ids_dtype!r} is not one of {', '.join(IDS_DTYPES)}")
    out = {k: v for k, v in meta.items() if k != PREFIX + "fixed_batch"}
    states = json.loads(meta[PREFIX + "states"])
    for entry in states:
        entry["shape"] = [BATCH if batch is None else batch, *entry["shape"][1:]]
    out[PREFIX + "states"] = json.dumps(states)
    out[PREFIX + "ids_dtype"] = ids_dtype
    if batch is not None:
        out[PREFIX + "fixed_batch"] = str(batch)
    return out


def io_mismatches(info: GraphInfo, declared: Declared, strict: bool) -> list[str]:
    """Where the metadata and the graph's declared inputs/outputs disagree: `declared` maps each input and
    output name to (NumPy dtype name, shape: an int or a symbolic dim's name per axis).

    Always compared: a state's rank, fixed dims and dtype, a fixed batch the metadata states, the ids dtype
    it records. `strict` (the exporter, before writing): also that the metadata records the ids dtype and
    says "batch" exactly where the graph's batch is symbolic."""
    out: list[str] = []
    ids = declared.get(INPUT_IDS)
    if ids is None:
        return [f"the graph has no {INPUT_IDS} input"]
    if info.ids_dtype is None and strict:
        out.append(f"rnnedge.ids_dtype is missing ({INPUT_IDS} is {ids[0]})")
    elif info.ids_dtype is not None and info.ids_dtype != ids[0]:
        out.append(f"{INPUT_IDS} is {ids[0]} but rnnedge.ids_dtype says {info.ids_dtype}")
    graph_batch = ids[1][0] if ids[1] else None
    fixed = graph_batch if isinstance(graph_batch, int) else None
    if (info.fixed_batch is not None or strict) and info.fixed_batch != fixed:
        out.append(f"{INPUT_IDS} has batch {graph_batch} but rnnedge.fixed_batch says {info.fixed_batch}")
    for s in info.states:
        for name in (s.input, s.output):
            if name not in declared:
                out.append(f"the graph has no {name}, which rnnedge.states names")
                continue
            dtype, shape = declared[name]
            if dtype != s.dtype:
                out.append(f"{name} is {dtype} but its metadata says {s.dtype}")
            if len(shape) != len(s.shape) or any(
                (g != w if isinstance(g, int) else strict) for g, w in zip(shape[1:], s.shape[1:], strict=True)
            ):
                out.append(f"{name} has shape {list(shape)} but its metadata says {list(s.shape)}")
            elif (s.fixed_batch is not None or strict) and s.fixed_batch != (
                shape[0] if isinstance(shape[0], int) else None
            ):
                out.append(f"{name} has batch {shape[0]} but its metadata says {list(s.shape)}")
    return out
