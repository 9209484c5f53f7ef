"""State bytes one stream carries between tokens, vs t, read from the graph's state contract.

Every rnnedge step graph has fixed state shapes (only `batch` is symbolic), so the bytes per stream
are the same at t = 1 and t = 65,536: for an RNN or Aaren its recurrent state, for the sliding-window
transformer its ring-buffer KV cache at full capacity (allocated whole from the first token, empty
slots masked). For comparison, a KV cache that grew with the stream (plain causal attention, no
window) would hold every token: its bytes per token times t, plus the other states.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rnnedge.graphmeta import StateInfo

CONTEXT_AXIS = 2  # a "kv" state is [batch, heads, context, head_dim] (the state contract's KV layout)


def state_memory(states: Sequence[StateInfo], ts: Sequence[int]) -> dict[str, Any]:
    """{bytes_per_stream, by_kind, bytes_vs_t, cache} for the states of one step graph at each t in `ts`.

    `cache` (None without a "kv" state): the cache's capacity in tokens, its bytes per token, and the
    bytes a growing (unwindowed) cache would hold at each t in `ts`.
    """
    total = sum(s.nbytes_per_stream() for s in states)
    by_kind: dict[str, int] = {}
    for s in states:
        by_kind[s.kind] = by_kind.get(s.kind, 0) + s.nbytes_per_stream()
    entry: dict[str, Any] = {
        "bytes_per_stream": total,
        "by_kind": by_kind,
        "bytes_vs_t": [total] * len(ts),
        "cache": None,
    }
    kv = [s for s in states if s.kind == "kv" and len(s.shape) == 4]
    if kv:
        capacity = {int(s.shape[CONTEXT_AXIS]) for s in kv}
        per_token = sum(s.nbytes_per_stream() // int(s.shape[CONTEXT_AXIS]) for s in kv)
        rest = total - sum(s.nbytes_per_stream() for s in kv)
        entry["cache"] = {
            "capacity_tokens": max(capacity),
            "bytes_per_token": per_token,
            "growing_bytes_vs_t": [rest + per_token * t for t in ts],
        }
    return entry
