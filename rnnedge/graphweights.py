"""Which weights a graph carries (torch-free): one sha256 over the fp32 step graph's initializers.

The export manifest records it as `weights_sha256`, and `rnnedge quantize` records, in each variant's
manifest entry, the hash of the fp32 step graph it quantized; `rnnedge drift` compares them, so two
graphs of different models with the same shapes are never compared as precisions of one model.
Manifests written before this key existed have no hash: nothing is compared for them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

WEIGHTS_KEY = "weights_sha256"


def weights_sha256(model: Any) -> str:
    """sha256 over every initializer of `model` (an onnx.ModelProto): name, type, dims and raw bytes,
    in name order (independent of node order or metadata)."""
    from onnx import numpy_helper

    h = hashlib.sha256()
    for init in sorted(model.graph.initializer, key=lambda t: t.name):
        array = numpy_helper.to_array(init)
        h.update(f"{init.name}\0{init.data_type}\0{list(init.dims)}\0".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def file_weights_sha256(path: Path) -> str | None:
    """weights_sha256 of the graph file at `path` (loaded without external data); None when the file
    is not there or does not load."""
    try:
        import onnx
    except ImportError:  # a torch/onnx-free reader (drift) compares the manifests' records instead
        return None

    if not path.is_file():
        return None
    try:
        return weights_sha256(onnx.load(str(path), load_external_data=False))
    except Exception:  # a graph that does not load has no hash to compare
        return None
