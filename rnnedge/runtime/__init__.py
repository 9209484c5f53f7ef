"""The on-device runtime: ONNX Runtime + NumPy only (no torch, no onnx), copied as is to a board.

Example::

    from rnnedge.runtime import StepSession, generate
    session = StepSession("export/step.onnx")
    for ch in generate(session, "ROMEO:", 200, temperature=0.8, seed=0):
        print(ch, end="", flush=True)
"""

from rnnedge.runtime._ort import resolve_providers
from rnnedge.runtime.evaluate import evaluate_export
from rnnedge.runtime.generate import generate
from rnnedge.runtime.parallel import ParallelSession
from rnnedge.runtime.sampling import Sampler
from rnnedge.runtime.step import StepSession

__all__ = ["ParallelSession", "Sampler", "StepSession", "evaluate_export", "generate", "resolve_providers"]
