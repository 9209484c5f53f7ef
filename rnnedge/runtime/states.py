"""Checking state arrays a caller hands in against the graph's state contract (any rank, any dtype)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnedge.errors import InputError
from rnnedge.graphmeta import GraphInfo, StateInfo


def state_arrays(value: Any, info: GraphInfo, batch: int) -> list[np.ndarray]:
    """`value` (a {name: array} dict or a list in metadata order) as arrays in metadata order.

    InputError (naming the state) unless every state is present, has its contract's dtype and its
    full shape at `batch`, float states are finite and position counters are non-negative.
    """
    names = [s.name for s in info.states]
    if isinstance(value, Mapping):
        missing = [n for n in names if n not in value]
        extra = [k for k in value if k not in names]
        if missing or extra:
            raise InputError(f"state must have exactly {names}; missing {missing}, unexpected {extra}")
        items = [value[n] for n in names]
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != len(names):
            raise InputError(f"state must hold {len(names)} arrays ({names}), got {len(value)}")
        items = list(value)
    else:
        raise InputError(f"state must be a dict or list of arrays, got {type(value).__name__}")
    return [check_state(s, item, batch) for s, item in zip(info.states, items, strict=True)]


def check_state(state: StateInfo, value: Any, batch: int) -> np.ndarray:
    """One state array, checked (see state_arrays)."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype != np.dtype(state.dtype):
        raise InputError(f"state {state.name!r} must be {state.dtype}, got {arr.dtype}")
    want = state.concrete_shape(batch)
    if arr.shape != want:
        raise InputError(f"state {state.name!r} must have shape {want}, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"state {state.name!r} holds NaN or infinite values")
    if state.kind == "position" and (arr < 0).any():
        raise InputError(f"state {state.name!r} is a position counter and holds negative values")
    return arr
