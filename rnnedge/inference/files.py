"""Finding a graph file: an export folder plus (kind, variant) -> the file, or one line naming what is there."""

from __future__ import annotations

import os
from pathlib import Path

from rnnedge.commit import settle
from rnnedge.errors import GraphError
from rnnedge.graphmeta import FP32, graph_file, list_variants


def graph_path(path: str | os.PathLike[str], kind: str, variant: str = FP32) -> Path:
    """An export folder -> its `kind` graph of `variant` (`step.onnx`, `step.int8-dynamic.onnx`, ...).

    A file path is returned as is. GraphError if the folder lacks that graph; the message lists the
    variants of `kind` the folder does hold.
    """
    p = Path(path)
    if p.is_dir():
        settle(p)  # a commit a killed writer left (rnnedge/commit.py): the new version is the one read
        name = graph_file(kind, variant)  # GraphError for a malformed variant name
        target = p / name
        if target.is_file():
            return target
        present = [v for v, kinds in list_variants(p).items() if kind in kinds]
        if not present:
            raise GraphError(f"{p} has no {name} and no other {kind} graph (is it an `rnnedge export` folder?)")
        hint = "; `rnnedge quantize` makes precision variants" if variant != FP32 else ""
        raise GraphError(f"{p} has no {name}; its {kind} variants: {', '.join(present)}{hint}")
    if not p.exists():
        raise GraphError(f"graph not found: {p}")
    return p
