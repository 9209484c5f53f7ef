"""StaticQdqInt8: ONNX Runtime's quantize_static in QDQ format, symmetric int8 (zero point 0), float bias.

TensorRT takes this form, so the parallel variant must pass the TensorRT rules. The state outputs are
routed through their own Identity first (graph_edits.isolate_outputs) so they stay float, unless the
recipe quantizes the state (the counter-example). `quant_pre_process` (shape inference only, node
names kept) is tried first; when it fails the raw graph is quantized and the report says why.
Calibration runs once per graph: its ranges are cached in the work folder for every later build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from rnnedge.errors import RnnedgeError
from rnnedge.quantization.builder import VariantBuilder, handles
from rnnedge.quantization.calibrate import FeedReader
from rnnedge.quantization.graph_edits import isolate_outputs
from rnnedge.quantization.recipes import StaticQdqInt8
from rnnedge.tool_output import tool_output

CALIB_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
PERCENTILE = 99.999


@handles(StaticQdqInt8)
class QdqBuilder(VariantBuilder):
    recipe: StaticQdqInt8
    tensorrt_graphs = ("parallel",)

    def prepare(self) -> None:
        if not self.recipe.quantize_embedding and not self.recipe.quantize_state:
            self.op_types = ("MatMul", "Gemm")  # type: ignore[misc]  # the embedding Gather stays float
        if not self.feeds:
            raise RnnedgeError(f"{self.recipe.name} needs calibration feeds for the {self.info.kind} graph")
        states = [s.output for s in self.info.states]
        self.isolated = [] if self.recipe.quantize_state else isolate_outputs(self.proto, states)
        raw = self.workdir / f"{self.info.kind}.qdq.raw.onnx"
        onnx.save(self.proto, str(raw))
        self.source: Path = raw
        self.preprocess = "ok"
        pre = self.workdir / f"{self.info.kind}.qdq.pre.onnx"
        try:
            with tool_output(self.workdir) as out:
                quant_pre_process(str(raw), str(pre), skip_optimization=True)
            self.source = pre
        except Exception as exc:  # ORT raises plain Exceptions ("Incomplete symbolic shape inference")
            why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else out.last_line()
            self.preprocess = f"failed, quantized the raw graph: {why}"
        self.cache = self.workdir / f"{self.info.kind}.calib.json"

    def details(self) -> dict[str, Any]:
        return {
            "format": "QDQ",
            "calib_method": self.recipe.calib_method,
            "calib_feeds": len(self.feeds),
            "per_channel": self.recipe.per_channel,
            "reduce_range": self.recipe.reduce_range,
            "symmetric": True,  # ActivationSymmetric + WeightSymmetric: zero point 0 (TensorRT)
            "weight_type": "int8",
            "activation_type": "int8",
            "bias": "float",
            "quantize_state": self.recipe.quantize_state,
            "quantize_embedding": self.recipe.quantize_embedding,
            "op_types": "all" if self.recipe.quantize_state else list(self.op_types),
            "preprocess": self.preprocess,
        }

    def convert(self, keep_float: list[str]) -> onnx.ModelProto:
        out = self.workdir / f"{self.info.kind}.qdq.out.onnx"
        all_ops = self.recipe.quantize_state  # the counter-example quantizes every op, state outputs included
        todo = [c for c in self.candidates if c not in keep_float]
        # Zero point 0 everywhere; biases stay float (an int32 DequantizeLinear is not a TensorRT op).
        extra: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
        if self.recipe.calib_method == "percentile":
            extra["CalibPercentile"] = PERCENTILE
        quantize_static(
            str(self.source),
            str(out),
            FeedReader(self.feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=None if all_ops else list(self.op_types),
            per_channel=self.recipe.per_channel,
            reduce_range=self.recipe.reduce_range,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=None if all_ops else (todo or None),
            nodes_to_exclude=sorted(keep_float) if all_ops else self.excluded(keep_float),
            calibrate_method=CALIB_METHODS[self.recipe.calib_method],
            extra_options=extra,
            calibration_cache_path=str(self.cache),
        )
        return onnx.load(str(out))
