"""QnnQdq and HtpFp16: the qnn-htp target's recipes (Qualcomm HTP through ONNX Runtime's QNN EP).

QnnQdq: `qnn_preprocess_model` (ORT's QNN graph clean-up; it raises TypeError on a model with
metadata_props in ORT 1.32, so the metadata is stripped first and restored after), then
`get_qnn_qdq_config` + `quantize`: every op QDQ, asymmetric uint16/uint8 activations, uint8 weights.
The state inputs and outputs get Q/DQ pairs like every other tensor, so the HTP runs with the state
itself quantized; its calibrated range is read back by `state_ranges` (the clip rate on held-out text,
quantization/on_htp.py). HtpFp16: the float graph unchanged; its recipe metadata tells the qnn-htp
provider to open it in the HTP's fp16 mode.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import numpy_helper

from rnnedge.errors import RnnedgeError
from rnnedge.graphmeta import StateInfo
from rnnedge.quantization.builder import VariantBuilder, handles
from rnnedge.quantization.calibrate import FeedReader
from rnnedge.quantization.recipes import HtpFp16, QnnQdq

QRANGE = {onnx.TensorProto.UINT8: (0, 255), onnx.TensorProto.UINT16: (0, 65535)}
QRANGE |= {onnx.TensorProto.INT8: (-128, 127), onnx.TensorProto.INT16: (-32768, 32767)}


def state_ranges(model: onnx.ModelProto, states: tuple[StateInfo, ...]) -> dict[str, tuple[float, float]]:
    """{state input: (lo, hi)}: the range each state input's QuantizeLinear represents (scale, zero point)."""
    inits = {i.name: i for i in model.graph.initializer}
    out: dict[str, tuple[float, float]] = {}
    names = {s.input for s in states}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in names or len(node.input) < 3:
            continue
        scale = float(numpy_helper.to_array(inits[node.input[1]]).reshape(()))
        zp_init = inits[node.input[2]]
        zp = float(numpy_helper.to_array(zp_init).reshape(()))
        qmin, qmax = QRANGE[zp_init.data_type]
        out[node.input[0]] = ((qmin - zp) * scale, (qmax - zp) * scale)
    return out


@handles(QnnQdq)
class QnnQdqBuilder(VariantBuilder):
    recipe: QnnQdq

    def prepare(self) -> None:
        if not self.feeds:
            raise RnnedgeError(f"{self.recipe.name} needs calibration feeds for the {self.info.kind} graph")
        from onnxruntime.quantization.execution_providers.qnn import qnn_preprocess_model

        self.metadata = {p.key: p.value for p in self.proto.metadata_props}
        del self.proto.metadata_props[:]  # qnn_preprocess_model's TypeError on metadata_props (ORT 1.32)
        raw = self.workdir / "step.qnn.raw.onnx"
        pre = self.workdir / "step.qnn.pre.onnx"
        onnx.save(self.proto, str(raw))
        changed = qnn_preprocess_model(str(raw), str(pre))
        self.source = pre if changed else raw
        self.preprocess = "changed" if changed else "unchanged"

    def details(self) -> dict[str, Any]:
        bits = self.recipe.activation_bits
        return {
            "format": "QDQ (ORT QNN config)",
            "target": "qnn-htp",
            "activation_type": f"uint{bits}",
            "weight_type": "uint8",
            "per_channel": self.recipe.per_channel,
            "state": f"quantized (uint{bits}, range calibrated with the state fed back)",
            "calib_method": self.recipe.calib_method,
            "calib_feeds": len(self.feeds),
            "calib_steps": self.recipe.calib_steps,
            "calib_streams": self.recipe.calib_streams,
            "preprocess": self.preprocess,
        }

    def convert(self, keep_float: list[str]) -> onnx.ModelProto:
        from onnxruntime.quantization import QuantType, quantize
        from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

        activation = QuantType.QUInt16 if self.recipe.activation_bits == 16 else QuantType.QUInt8
        config = get_qnn_qdq_config(
            str(self.source),
            FeedReader(self.feeds),
            activation_type=activation,
            weight_type=QuantType.QUInt8,
            per_channel=self.recipe.per_channel,
            nodes_to_exclude=sorted(keep_float) or None,
        )
        out = self.workdir / "step.qnn.out.onnx"
        quantize(str(self.source), str(out), config)
        model = onnx.load(str(out))
        for key, value in self.metadata.items():  # restored: stamp() then sets the variant's rnnedge keys
            model.metadata_props.add(key=key, value=value)
        return model


@handles(HtpFp16)
class HtpFp16Builder(VariantBuilder):
    recipe: HtpFp16

    def details(self) -> dict[str, Any]:
        return {
            "format": "float graph, HTP fp16 mode (enable_htp_fp16_precision)",
            "target": "qnn-htp",
            "state": "float32 at the graph's I/O, fp16 inside the HTP",
        }

    def convert(self, keep_float: list[str]) -> onnx.ModelProto:
        return onnx.ModelProto.FromString(self.proto.SerializeToString())
