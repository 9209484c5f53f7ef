"""onnxsim with a guard: a simplified graph is kept only if it is smaller, still dynamic and verified.

The step graph gets onnxsim and then rnnedge's own step pass (lean.py: no unit time axis, fewer
nodes per token); when that pass cannot rewrite a graph, the step graph keeps onnxsim's result. Last,
token_tables.py turns what the step computes from the token id alone into per-token lookups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

Simplifier = Callable[[onnx.ModelProto], onnx.ModelProto]


def onnxsim_simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxsim.simplify without its own random-input check (we verify against torch ourselves)."""
    import onnxsim

    simplified, ok = onnxsim.simplify(model, check_n=0)
    if not ok:
        raise RuntimeError("onnxsim reported that the simplified model does not match")
    return simplified


def step_simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxsim, then the lean step pass (lean.py); onnxsim's graph alone where the pass gives up or
    saves no node (attention: the unit axis moves with a Transpose, so most of it comes back); then
    the token tables (token_tables.py)."""
    from rnnedge.exporter.lean import LeanError, lean_step
    from rnnedge.exporter.token_tables import token_tables

    simplified = onnxsim_simplify(model)
    try:
        lean = lean_step(simplified)
    except LeanError:
        return token_tables(simplified)
    return token_tables(lean if len(lean.graph.node) < len(simplified.graph.node) else simplified)


@dataclass(frozen=True)
class Candidate:
    """A simplified graph that passed the structural tests (it still has to pass verification)."""

    model: onnx.ModelProto | None
    reason: str  # why it was rejected, or "" when it is a candidate


def _dims(model: onnx.ModelProto) -> list[tuple[str, tuple[str | int, ...]]]:
    out = []
    for value in [*model.graph.input, *model.graph.output]:
        dims = tuple(d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim)
        out.append((value.name, dims))
    return out


def try_simplify(model: onnx.ModelProto, simplifier: Simplifier | None = None, kind: str = "parallel") -> Candidate:
    """Run the simplifier (default: onnxsim, plus the lean pass for kind 'step') and reject a result
    that failed, grew, or lost a dynamic dimension."""
    simplifier = simplifier or (step_simplify if kind == "step" else onnxsim_simplify)
    before = len(model.graph.node)
    try:
        simplified = simplifier(model)
        onnx.checker.check_model(simplified)
    except Exception as exc:  # the simplifier is third-party code: any failure means "keep the original"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Candidate(None, f"simplifier failed: {type(exc).__name__}: {first[:200]}")
    after = len(simplified.graph.node)
    if after > before:
        return Candidate(None, f"simplifier grew the graph ({before} -> {after} nodes)")
    baked = [
        f"{name}{list(dims)}"
        for (name, dims), (_, want) in zip(_dims(simplified), _dims(model), strict=False)
        if any(isinstance(w, str) and w and not isinstance(d, str) for d, w in zip(dims, want, strict=False))
    ]
    if [n for n, _ in _dims(simplified)] != [n for n, _ in _dims(model)]:
        return Candidate(None, "simplifier changed the graph's inputs or outputs")
    if baked:
        return Candidate(None, f"simplifier fixed a dynamic dimension: {', '.join(baked)}")
    return Candidate(simplified, "")
