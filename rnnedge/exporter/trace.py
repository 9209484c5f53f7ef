"""Trace a CharLM into the two ONNX graphs (TorchScript exporter; names from rnnedge.graphmeta).

The parallel graph is the model's T > 1 path traced with a fixed number of doubling-scan passes
(`fixed_scan_levels`), so it is exact for every T <= 2**levels; gru/lstm mixers come out as the ONNX
GRU/LSTM ops. The step graph traces the T == 1 path: every mixer runs its cell as MatMul + elementwise.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from rnnedge.errors import ConfigError, GraphError
from rnnedge.graphmeta import INPUT_IDS, LOGITS, MAX_SEQ_LEN
from rnnedge.models import CharLM

# LayerNormalization (opset 17) is the newest op the graphs need; the TorchScript exporter stops at 20.
MIN_OPSET = 17
MAX_OPSET = 20
# Which op forces the lower bound, for the error message.
OPSET_NEEDS = {"LayerNormalization": 17}
# MAX_SEQ_LEN (graphmeta, 2**24): 24 doubling passes; beyond this the fixed-depth graph only gets slower, so
# longer inputs are chunked with carried state (and a file claiming more is refused as damaged).


def check_opset(opset: int) -> None:
    """ConfigError naming the op that needs a newer opset, or the exporter's ceiling."""
    if not isinstance(opset, int) or isinstance(opset, bool):
        raise ConfigError(f"opset must be an integer, got {opset!r}")
    if opset < MIN_OPSET:
        needs = ", ".join(f"{op} needs opset >= {v}" for op, v in OPSET_NEEDS.items() if v > opset)
        raise ConfigError(
            f"opset {opset} cannot express the graph ({needs}); supported opsets: {MIN_OPSET}-{MAX_OPSET}"
        )
    if opset > MAX_OPSET:
        raise ConfigError(
            f"opset {opset} is newer than torch's TorchScript ONNX exporter supports ({MAX_OPSET}); "
            f"supported opsets: {MIN_OPSET}-{MAX_OPSET}"
        )


def levels_for(max_seq_len: int) -> int:
    """Doubling passes for the parallel graph: ceil(log2(max_seq_len)), at least 1."""
    if not isinstance(max_seq_len, int) or isinstance(max_seq_len, bool) or not 2 <= max_seq_len <= MAX_SEQ_LEN:
        raise ConfigError(f"max_seq_len must be an integer >= 2 and <= {MAX_SEQ_LEN} (2**24), got {max_seq_len!r}")
    return max(1, math.ceil(math.log2(max_seq_len)))


class ParallelGraph(nn.Module):
    """(input_ids (B, T), *states) -> (logits (B, T, V), *states)."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_state = self.model(input_ids, tuple(state))  # (B, T, V)
        return (logits, *new_state)


class StepGraph(nn.Module):
    """(input_ids (B,), *states) -> (logits (B, V), *states): the T == 1 cell path."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_state = self.model(input_ids.unsqueeze(1), tuple(state))  # (B, 1, V)
        return (logits[:, 0], *new_state)  # (B, V)


@contextlib.contextmanager
def _exporter_errors(opset: int) -> Iterator[None]:
    """torch.onnx raises many exception types; a user sees one GraphError line."""
    try:
        yield
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GraphError(f"torch.onnx.export (opset {opset}) failed: {first[:300]}") from exc


def _names(model: CharLM) -> tuple[list[str], list[str]]:
    states = model.config.state_infos()
    return [INPUT_IDS] + [s.input for s in states], [LOGITS] + [s.output for s in states]


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], opset: int, time_axis: bool, model: CharLM) -> bytes:
    inputs, outputs = _names(model)
    # Every state's only symbolic dim is its first ("batch"); graphmeta.StateInfo holds the rest fixed.
    dyn: dict[str, dict[int, str]] = {name: {0: "batch"} for name in inputs[1:] + outputs[1:]}
    dyn[INPUT_IDS] = {0: "batch", 1: "time"} if time_axis else {0: "batch"}
    dyn[LOGITS] = {0: "batch", 1: "time"} if time_axis else {0: "batch"}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings(), _exporter_errors(opset):
        warnings.simplefilter("ignore")  # tracer warnings about python ints / GRU batch_first are expected
        torch.onnx.export(
            module,
            args,
            buf,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dyn,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


@contextlib.contextmanager
def fixed_scan_levels(model: nn.Module, levels: int | None) -> Iterator[None]:
    """Within the block, every module with a `scan_levels` attribute (rnnedge's scan mixers, a byom
    adapter's scan) runs exactly `levels` doubling passes (for tracing)."""
    mods = [m for m in model.modules() if hasattr(m, "scan_levels")]
    saved = [m.scan_levels for m in mods]
    for m in mods:
        setattr(m, "scan_levels", levels)  # noqa: B010 (nn.Module's __setattr__ types it as a tensor)
    try:
        yield
    finally:
        for m, s in zip(mods, saved, strict=True):
            setattr(m, "scan_levels", s)  # noqa: B010


def trace_parallel(model: CharLM, opset: int, levels: int) -> bytes:
    """Serialized ONNX of the parallel graph, exact for T <= 2**levels."""
    model = model.eval()
    idx = torch.zeros(2, 5, dtype=torch.long)  # (B, T): T > 1 selects the parallel / fused-RNN path
    with fixed_scan_levels(model, levels):
        return _export(ParallelGraph(model), (idx, *model.init_state(2)), opset, True, model)


def trace_step(model: CharLM, opset: int) -> bytes:
    """Serialized ONNX of the one-token step graph."""
    model = model.eval()
    idx = torch.zeros(2, dtype=torch.long)  # (B,)
    return _export(StepGraph(model), (idx, *model.init_state(2)), opset, False, model)
