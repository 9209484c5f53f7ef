"""The one ONNX Runtime layer (onnxruntime + NumPy; no torch, no onnx).

Sessions (providers and their options, threads), rnnedge graphs checked against their metadata,
state buffers of any shape and dtype, where ORT placed a graph (Memcpy nodes), the step loop, the
windowed parallel loop, NLL, and reading text. The exporter's verification, quantization, drift and
the runtime all go through here.
"""

from rnnedge.inference.binding import bind_arrays, numpy_dtype, output_dtype
from rnnedge.inference.files import graph_path
from rnnedge.inference.loop import StepRunner, parallel_nll, parallel_token_nll, step_nll
from rnnedge.inference.nll import log_softmax, nll, streams_of
from rnnedge.inference.placement import count_memcpy, memcpy_nodes
from rnnedge.inference.providers import PROVIDERS, ProviderChoice, resolve_providers
from rnnedge.inference.sessions import GraphSession, open_graph, open_session, session_options, zero_states
from rnnedge.inference.text import encode_text, read_text

__all__ = [
    "PROVIDERS",
    "GraphSession",
    "ProviderChoice",
    "StepRunner",
    "bind_arrays",
    "count_memcpy",
    "encode_text",
    "graph_path",
    "log_softmax",
    "memcpy_nodes",
    "nll",
    "numpy_dtype",
    "open_graph",
    "open_session",
    "output_dtype",
    "parallel_nll",
    "parallel_token_nll",
    "read_text",
    "resolve_providers",
    "session_options",
    "step_nll",
    "streams_of",
    "zero_states",
]
