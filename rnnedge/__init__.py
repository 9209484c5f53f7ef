"""rnnedge: recurrent char-LMs from parallel-scan training to int8 on the edge, with per-timestep drift.

Importing the top-level package pulls in no torch: the runtime and quantization subpackages
run on ONNX Runtime + NumPy alone.
"""

__version__ = "0.1.0"

from rnnedge.errors import RnnedgeError

__all__ = ["RnnedgeError", "__version__", "export"]


def __getattr__(name: str) -> object:
    """`rnnedge.export` (rnnedge.byom.export) imports torch and onnx only when first used."""
    if name == "export":
        from rnnedge.byom import export

        return export
    raise AttributeError(f"module 'rnnedge' has no attribute {name!r}")
