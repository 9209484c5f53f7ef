"""IOBinding over preallocated NumPy arrays of any dtype: ORT reads and writes them in place, allocating nothing."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnxruntime as ort

from rnnedge.inference.sessions import ORT_TYPES

NUMPY_DTYPES = {ort_type: np.dtype(name) for name, ort_type in ORT_TYPES.items()}  # "tensor(float)" -> float32


def numpy_dtype(ort_type: str) -> np.dtype:
    """The NumPy dtype of an ORT type string such as 'tensor(float16)'; ValueError for others."""
    if ort_type not in NUMPY_DTYPES:
        raise ValueError(f"no NumPy dtype for ONNX Runtime type {ort_type}")
    return NUMPY_DTYPES[ort_type]


def output_dtype(session: ort.InferenceSession, name: str) -> np.dtype:
    """The NumPy dtype of output `name` of a session."""
    for out in session.get_outputs():
        if out.name == name:
            return numpy_dtype(out.type)
    raise ValueError(f"the session has no output {name!r}")


def bind_arrays(
    session: ort.InferenceSession, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
) -> ort.IOBinding:
    """An IOBinding of `session` whose inputs and outputs are these arrays (CPU memory, C-contiguous).

    `session.run_with_iobinding(binding)` then reads the inputs and writes the outputs in place, so a
    loop that rebinds nothing allocates nothing. The arrays must outlive the binding and keep their
    shapes; with a GPU provider ORT copies them to and from the device on each run. A session of an
    emulated target (targets/remote.py) gets its own stand-in, which does the same through its worker.
    """
    for name, arr in [*inputs.items(), *outputs.items()]:
        if not arr.flags.c_contiguous:
            raise ValueError(f"array bound to {name!r} must be C-contiguous")
    if hasattr(session, "bind_numpy"):
        return session.bind_numpy(inputs, outputs)
    binding = session.io_binding()
    for name, arr in inputs.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
    for name, arr in outputs.items():
        binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(arr))
    return binding
