"""cuda: an NVIDIA GPU through ONNX Runtime's CUDA execution provider (onnxruntime-gpu, `[gpu]` extra).

TF32 is off (`use_tf32=0`): with it, the parallel graph's logits were 9.5e-3 from the CPU's at T=4096,
8.6e-6 without (reference.md, GPU facts). int8-dynamic's MatMulInteger runs on the CPU EP there, so the
recipes that suit it are fp16 and QDQ int8.
"""

from __future__ import annotations

from rnnedge.targets.spec import Availability, TargetSpec


def _probe() -> Availability:
    from rnnedge.inference.cuda_check import cuda_provider_problem  # opens a one-node CUDA session

    problem = cuda_provider_problem()
    return Availability(problem is None, problem or "CUDAExecutionProvider loads on this machine")


SPEC = TargetSpec(
    name="cuda",
    summary="NVIDIA GPU, ONNX Runtime CUDA EP (TF32 off), CPU EP as fallback",
    device="NVIDIA GPU",
    runs="host",
    probe=_probe,
    int8_path=lambda: "CUDA EP: QDQ int8 through cuBLASLt where supported; DynamicQuantizeLinear falls back to the CPU",
    providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
    provider_options={"CUDAExecutionProvider": {"use_tf32": "0"}},
    recipes=("fp16", "int8-qdq", "int8-weight", "int4-weight"),
    reference="ORT CUDA EP docs (use_tf32, enable_cuda_graph); ../shared/docs/reference.md, GPU facts",
)
