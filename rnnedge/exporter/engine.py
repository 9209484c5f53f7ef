"""`rnnedge build-engine`: a TensorRT engine from parallel.onnx (only where `import tensorrt` works).

UNTESTED on our machines: TensorRT cannot be installed in CI or on the dev boxes (no CUDA; the PyPI
package downloads from NVIDIA's index). The code follows the TensorRT 10 Python API (explicit batch,
one optimization profile covering batch 1..max_batch and time 1..max_seq_len) and refuses early, with
one clear line, when tensorrt is missing or the static check finds ops TensorRT cannot parse.
"""

from __future__ import annotations

import os
from pathlib import Path

from rnnedge.errors import DependencyError, GraphError, RnnedgeError
from rnnedge.graphmeta import GRAPH_FILES, INPUT_IDS, INT8_FILES
from rnnedge.io import write_bytes
from rnnedge.tensorrt_rules import check_tensorrt


def build_engine(
    export_dir: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    int8: bool = False,
    fp16: bool = False,
    max_seq_len: int = 4096,
    max_batch: int = 8,
) -> Path:
    """Serialize a TensorRT engine for the parallel graph; returns the engine path."""
    src = Path(export_dir) / (INT8_FILES if int8 else GRAPH_FILES)["parallel"]
    if not src.is_file():
        hint = " (run `rnnedge quantize` first)" if int8 else " (run `rnnedge export` first)"
        raise GraphError(f"{src} not found{hint}")
    if max_seq_len < 1 or max_batch < 1:
        raise RnnedgeError("--max-seq-len and --max-batch must be positive")
    problems = check_tensorrt(src)
    if problems:
        raise GraphError(f"{src.name} uses ops TensorRT cannot parse: {problems[0]} (+{len(problems) - 1} more)")
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as exc:
        raise DependencyError("tensorrt is not installed; on a CUDA machine run `pip install 'rnnedge[gpu]'`") from exc

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(src.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GraphError(f"TensorRT could not parse {src.name}: {errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)  # QDQ graph: scales come from the graph, no calibrator
    profile = builder.create_optimization_profile()
    opt_t = min(512, max_seq_len)
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name == INPUT_IDS:
            profile.set_shape(tensor.name, (1, 1), (1, opt_t), (max_batch, max_seq_len))
        else:
            width = tensor.shape[1]
            profile.set_shape(tensor.name, (1, width), (1, width), (max_batch, width))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RnnedgeError("TensorRT failed to build the engine (see the TensorRT log above)")
    target = Path(out) if out is not None else src.with_suffix(".plan")
    write_bytes(target, bytes(engine))
    return target
