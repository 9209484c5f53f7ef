"""The on-device runtime: ONNX Runtime + NumPy only (no torch, no onnx), copied as is to a board.

Sessions come from `rnnedge.inference` (the one ONNX Runtime layer). Example::

    from rnnedge.runtime import StepSession, generate
    session = StepSession("export/", variant="int8-dynamic")  # or "export/step.onnx"
    for ch in generate(session, "ROMEO:", 200, temperature=0.8, seed=0):
        print(ch, end="", flush=True)
"""

from rnnedge.inference import resolve_providers
from rnnedge.runtime.evaluate import evaluate_export
from rnnedge.runtime.generate import generate
from rnnedge.runtime.parallel import ParallelSession
from rnnedge.runtime.sampling import Sampler
from rnnedge.runtime.step import StepSession

__all__ = ["ParallelSession", "Sampler", "StepSession", "evaluate_export", "generate", "resolve_providers"]
