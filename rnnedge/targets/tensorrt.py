"""tensorrt: NVIDIA TensorRT through ONNX Runtime's TensorRT execution provider (`[gpu]` extra).

TensorRT's ONNX parser takes QuantizeLinear/DequantizeLinear with zero point 0 but not
DynamicQuantizeLinear or MatMulInteger (reference.md, Operator facts), so int8 means the symmetric QDQ
recipe; rnnedge/tensorrt_rules.py checks a graph against those rules statically, which is all that runs
where TensorRT cannot be installed (this project's CI: PyPI's tensorrt libs download from NVIDIA).
"""

from __future__ import annotations

from rnnedge.targets.spec import Availability, TargetSpec

TENSORRT_EP = "TensorrtExecutionProvider"


def _probe() -> Availability:
    import onnxruntime as ort

    if TENSORRT_EP not in ort.get_available_providers():
        return Availability(False, f"onnxruntime {ort.__version__} has no {TENSORRT_EP}; graphs are checked statically")
    return Availability(True, f"{TENSORRT_EP} is in this onnxruntime build")


SPEC = TargetSpec(
    name="tensorrt",
    summary="NVIDIA TensorRT via ONNX Runtime's TensorRT EP (static QDQ checks where TensorRT is absent)",
    device="NVIDIA GPU (TensorRT engines)",
    runs="host",
    probe=_probe,
    int8_path=lambda: "TensorRT int8 tactics for symmetric QDQ (zero point 0)",
    providers=(TENSORRT_EP, "CUDAExecutionProvider", "CPUExecutionProvider"),
    recipes=("int8-qdq", "fp16"),
    tolerance=1e-3,
    reference="TensorRT ONNX parser operator support; rnnedge/tensorrt_rules.py",
)
