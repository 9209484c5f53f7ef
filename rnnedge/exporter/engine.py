"""`rnnedge build-engine`: a TensorRT engine from a parallel graph (only where `import tensorrt` works).

`--variant NAME` picks `parallel.<NAME>.onnx` (default: the fp32 `parallel.onnx`). A QDQ variant
(int8-qdq) turns on TensorRT's INT8 mode (the scales come from the graph, no calibrator); a float16
variant turns on FP16, as `--fp16` does for any graph. Before tensorrt is imported the graph must pass
rnnedge.tensorrt_rules (so an int8-dynamic or weight-only variant is refused with one line).

UNTESTED on our machines: TensorRT cannot be installed in CI or on the dev boxes (no CUDA; the PyPI
package downloads from NVIDIA's index). The code follows the TensorRT 10 Python API (explicit batch,
one optimization profile covering batch 1..max_batch and time 1..max_seq_len; each state input takes
its full shape from the graph's metadata).
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from rnnedge.errors import DependencyError, GraphError, RnnedgeError
from rnnedge.graphmeta import FP32, INPUT_IDS, GraphInfo, graph_file, parse_metadata
from rnnedge.io import write_bytes
from rnnedge.tensorrt_rules import check_tensorrt

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _source(export_dir: Path, variant: str) -> tuple[Path, onnx.ModelProto, GraphInfo]:
    """The variant's parallel graph, statically checked against TensorRT's rules."""
    src = export_dir / graph_file("parallel", variant)
    if not src.is_file():
        hint = (
            f"run `rnnedge quantize {export_dir} --method {variant}` first"
            if variant != FP32
            else "run `rnnedge export` first"
        )
        raise GraphError(f"{src} not found ({hint})")
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise GraphError(f"{src} is not a readable ONNX model: {exc}") from exc
    info = parse_metadata({p.key: p.value for p in model.metadata_props}, str(src))
    if info.kind != "parallel":
        raise GraphError(f"{src} is a {info.kind} graph; TensorRT engines are built from the parallel graph")
    problems = check_tensorrt(model)
    if problems:
        raise GraphError(f"{src.name} uses ops TensorRT cannot parse: {problems[0]} (+{len(problems) - 1} more)")
    return src, model, info


def build_engine(
    export_dir: str | os.PathLike[str],
    *,
    variant: str = FP32,
    out: str | os.PathLike[str] | None = None,
    fp16: bool = False,
    max_seq_len: int = 4096,
    max_batch: int = 8,
) -> Path:
    """Serialize a TensorRT engine for a variant's parallel graph; returns the engine path."""
    if max_seq_len < 1 or max_batch < 1:
        raise RnnedgeError("--max-seq-len and --max-batch must be positive")
    src, model, info = _source(Path(export_dir), variant)
    int8 = any(n.op_type in QDQ_OPS for n in model.graph.node)
    half = fp16 or any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise DependencyError("tensorrt is not installed; on a CUDA machine run `pip install 'rnnedge[gpu]'`") from exc

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GraphError(f"TensorRT could not parse {src.name}: {errors}")
    config = builder.create_builder_config()
    if half:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)  # QDQ graph: scales come from the graph, no calibrator
    profile = builder.create_optimization_profile()
    opt_t = min(512, max_seq_len)
    profile.set_shape(INPUT_IDS, (1, 1), (1, opt_t), (max_batch, max_seq_len))
    for state in info.states:
        one, most = state.concrete_shape(1), state.concrete_shape(max_batch)
        profile.set_shape(state.input, one, one, most)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RnnedgeError("TensorRT failed to build the engine (see the TensorRT log above)")
    target = Path(out) if out is not None else src.with_suffix(".plan")
    write_bytes(target, bytes(engine))
    return target
