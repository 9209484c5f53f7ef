"""Private: turn one fp32 rnnedge graph into int8 bytes with ONNX Runtime's quantizers.

One `GraphBuilder` per graph: it names nodes, tries `quant_pre_process` (falls back to the raw graph),
and calibrates once (ranges cached in a JSON file), so rebuilding with other nodes kept float — as
the sensitivity analysis and the loss budget do — costs a quantizer pass, not a calibration.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from rnnedge.errors import RnnedgeError
from rnnedge.graphmeta import PREFIX, GraphInfo
from rnnedge.quantization.calibrate import Feed, FeedReader
from rnnedge.quantization.q_run import gemm_to_matmul, isolate_outputs, node_labels, quantizable_nodes

CALIB_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
OP_TYPES = ["MatMul", "Gemm", "Gather"]


@contextlib.contextmanager
def _quiet(workdir: Path) -> Iterator[None]:
    """Run ONNX Runtime's quantizer tools quietly inside `workdir`.

    They log advice through the root logger, and symbolic shape inference / calibration leave
    scratch files (sym_shape_infer_temp.onnx, *.data) in the current directory.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(cwd)
        root.setLevel(level)


class GraphBuilder:
    """Builds int8 variants of one fp32 graph; `build(keep_float)` -> serialized int8 model."""

    def __init__(
        self,
        proto: onnx.ModelProto,
        info: GraphInfo,
        workdir: Path,
        *,
        static: bool,
        calib_method: str = "minmax",
        per_channel: bool = False,
        quantize_state: bool = False,
    ) -> None:
        self.info = info
        self.static = static
        self.calib_method = calib_method
        self.per_channel = per_channel
        self.quantize_state = quantize_state
        self.workdir = workdir
        self.fp32_meta = {p.key: p.value for p in proto.metadata_props}
        proto = onnx.ModelProto.FromString(proto.SerializeToString())  # a private copy
        # Recurrent state outputs must stay float: see q_run.isolate_outputs.
        self.isolated = [] if quantize_state else isolate_outputs(proto, [s.output for s in info.states])
        self.labels = node_labels(proto)
        # The dynamic quantizer skips Gemm; the exporter's graphs use Gemm for every Linear.
        self.gemms_rewritten = 0 if static else gemm_to_matmul(proto)
        raw = workdir / f"{info.kind}.raw.onnx"
        onnx.save(proto, str(raw))
        self.candidates = quantizable_nodes(proto)
        # Gather/MatMul nodes that are not weight ops (e.g. selecting logits[:, 0]) stay float always.
        self.never = [n.name for n in proto.graph.node if n.op_type in OP_TYPES and n.name not in self.candidates]
        self.unquantized_ops = sorted(
            {n.op_type for n in proto.graph.node if n.op_type in ("LSTM", "GRU", "RNN", "Conv")}
        )
        self.source = raw
        self.preprocess = "skipped (dynamic)"
        if static:
            pre = workdir / f"{info.kind}.pre.onnx"
            try:
                with _quiet(workdir):
                    quant_pre_process(str(raw), str(pre), skip_optimization=True)
                self.source = pre
                self.preprocess = "ok"
            except Exception as exc:  # ORT raises plain Exceptions ("Incomplete symbolic shape inference")
                self.preprocess = f"failed, quantized the raw graph: {str(exc).splitlines()[0][:160]}"
        self.cache = workdir / f"{info.kind}.calib.json"
        self.feeds: list[Feed] = []

    def describe(self, keep_float: list[str]) -> dict[str, Any]:
        static = self.static
        return {
            "method": "static" if static else "dynamic",
            "format": "QDQ" if static else "dynamic (DynamicQuantizeLinear + MatMulInteger)",
            "calib_method": self.calib_method if static else None,
            "per_channel": self.per_channel,
            "symmetric": static,  # static: ActivationSymmetric + WeightSymmetric (zero point 0)
            "weight_type": "int8",
            "bias": "float" if static else "float (Add after MatMulInteger)",
            "activation_type": "int8" if static else "uint8 (dynamic, per tensor)",
            "quantize_state": self.quantize_state,
            "op_types": "all" if self.quantize_state else OP_TYPES,
            "quantized_nodes": len([c for c in self.candidates if c not in keep_float]),
            "kept_float": list(keep_float),
            "kept_float_labels": [self.labels.get(n, n) for n in keep_float],
            "not_quantized_ops": self.unquantized_ops,
            "preprocess": self.preprocess,
        }

    def build(self, keep_float: list[str]) -> bytes:
        """Quantize with `keep_float` node names left in fp32; returns the int8 model (metadata not yet set)."""
        out = self.workdir / f"{self.info.kind}.int8.tmp.onnx"
        exclude = sorted(set(self.never) | set(keep_float))
        todo = [c for c in self.candidates if c not in keep_float]
        try:
            with _quiet(self.workdir):
                if self.static:
                    self._static(out, exclude, todo)
                else:
                    quantize_dynamic(
                        str(self.source),
                        str(out),
                        op_types_to_quantize=OP_TYPES,
                        per_channel=self.per_channel,
                        weight_type=QuantType.QInt8,
                        nodes_to_quantize=todo or None,
                        nodes_to_exclude=exclude,
                        extra_options={"WeightSymmetric": True},
                    )
        except RnnedgeError:
            raise
        except Exception as exc:
            raise RnnedgeError(
                f"ONNX Runtime could not quantize {self.info.kind}.onnx: {str(exc).splitlines()[0][:200]}"
            ) from exc
        data = out.read_bytes()
        os.remove(out)
        return data

    def _static(self, out: Path, exclude: list[str], todo: list[str]) -> None:
        if not self.feeds and not self.cache.is_file():
            raise RnnedgeError("static quantization needs calibration text (--calib PATH)")
        # Zero point 0 everywhere; biases stay float (an int32 DequantizeLinear is not a TensorRT op).
        extra: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
        if self.calib_method == "percentile":
            extra["CalibPercentile"] = 99.999
        quantize_static(
            str(self.source),
            str(out),
            FeedReader(self.feeds) if self.feeds else None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=None if self.quantize_state else OP_TYPES,
            per_channel=self.per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=None if self.quantize_state else (todo or None),
            nodes_to_exclude=exclude if not self.quantize_state else sorted(set(exclude) - set(self.never)),
            calibrate_method=CALIB_METHODS[self.calib_method],
            extra_options=extra,
            calibration_cache_path=str(self.cache),
        )


def with_metadata(data: bytes, fp32_meta: dict[str, str], quantization: dict[str, Any]) -> bytes:
    """The int8 model with the fp32 graph's rnnedge metadata plus `rnnedge.quantization`."""
    import json

    proto = onnx.load_from_string(data)
    others = {p.key: p.value for p in proto.metadata_props if not p.key.startswith(PREFIX)}
    del proto.metadata_props[:]
    for key, value in {
        **others,
        **fp32_meta,
        PREFIX + "quantization": json.dumps(quantization, sort_keys=True),
    }.items():
        proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()
