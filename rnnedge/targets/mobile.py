"""mobile: Android NNAPI and Apple CoreML, through a fixed-shape step graph in the export's `mobile/` folder.

Neither execution provider is in a Linux onnxruntime wheel, so rnnedge prepares and checks the graph
here (exporter/mobile.py: int32 ids, fixed batch, ops inside NNAPI's and CoreML's sets, verified on the
CPU EP against the exporter's reference, ORT's mobile usability checker for the partitions), and the
device runs it. int8: the QDQ recipe (NNAPI takes QDQ; dynamic quantization's ops are not in its set).
"""

from __future__ import annotations

from typing import Any

from rnnedge.targets.spec import Availability, TargetSpec


def _export(*args: Any, **kwargs: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    from rnnedge.exporter.mobile import export_mobile  # torch/onnx side: imported only when exporting

    return export_mobile(*args, **kwargs)


SPEC = TargetSpec(
    name="mobile",
    summary="NNAPI / CoreML: fixed-shape step graph in mobile/ (prepared and checked here, run on the device)",
    device="Android NNAPI or Apple CoreML accelerator",
    runs="static",
    probe=lambda: Availability(
        False, "NNAPI and CoreML are not in this onnxruntime build: the graph is checked here, run on a phone"
    ),
    int8_path=lambda: "the device's NNAPI/CoreML driver (QDQ int8); not measurable here",
    export=_export,
    folder="mobile",
    recipes=("int8-qdq", "fp16"),
    reference="ORT mobile usability checker; ../shared/docs/reference.md, Embedded facts",
)
