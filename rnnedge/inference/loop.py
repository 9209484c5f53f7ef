"""The step loop and the windowed parallel loop over (B, L) token ids with carried state, and their NLL."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rnnedge.inference.nll import nll
from rnnedge.inference.sessions import GraphSession

# Called at each step with (t, the ids fed (B,), the logits (B, V), the states that step was fed); may record them.
StepHook = Callable[[int, np.ndarray, np.ndarray, list[np.ndarray]], None]


class StepRunner:
    """Drive one step graph token by token: `step(ids (B,), states) -> (logits (B, V), states)`."""

    def __init__(self, graph: GraphSession) -> None:
        if graph.info.kind != "step":
            raise ValueError(f"StepRunner needs a step graph, got {graph.info.kind}")
        self.graph = graph

    def zeros(self, batch: int) -> list[np.ndarray]:
        return self.graph.zero_states(batch)

    def step(self, ids: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.graph.run(ids, states)

    def run(
        self, ids: np.ndarray, states: list[np.ndarray] | None = None, hook: StepHook | None = None
    ) -> tuple[float, list[np.ndarray]]:
        """Feed ids (B, L) column by column; (mean NLL of predicting ids[:, t+1], final states).

        `hook(t, ids[:, t], logits, states_before)` sees every step before the state advances.
        """
        batch, length = ids.shape
        state = self.zeros(batch) if states is None else states
        total = 0.0
        for t in range(length - 1):
            x = np.ascontiguousarray(ids[:, t])  # (B,)
            logits, new = self.step(x, state)  # (B, V)
            if hook is not None:
                hook(t, x, logits, state)
            total += float(nll(logits, ids[:, t + 1]).sum())
            state = new
        return total / max(1, batch * (length - 1)), state


def step_nll(graph: GraphSession, ids: np.ndarray) -> float:
    """Mean NLL (nats/char) of a step graph over ids (B, L), state carried from zero."""
    return StepRunner(graph).run(ids)[0]


def parallel_token_nll(
    graph: GraphSession, ids: np.ndarray, window: int = 256, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """Per-position NLL (B, L-1) of a parallel graph predicting ids[:, t+1], fed in windows (<= its
    max_seq_len) with the state carried across windows, so memory follows the window, not L.
    `progress(done, total)` is called after each window (positions scored so far, of L-1)."""
    batch, length = ids.shape
    window = min(window, graph.info.max_seq_len or window)
    state = graph.zero_states(batch)
    out = np.empty((batch, max(0, length - 1)), dtype=np.float64)  # (B, L-1)
    for start in range(0, length - 1, window):
        x = ids[:, start : min(start + window, length - 1)]  # (B, T)
        logits, state = graph.run(x, state)  # (B, T, V)
        out[:, start : start + x.shape[1]] = nll(logits, ids[:, start + 1 : start + 1 + x.shape[1]])
        if progress is not None:
            progress(start + x.shape[1], length - 1)
    return out


def parallel_nll(graph: GraphSession, ids: np.ndarray, window: int = 256) -> float:
    """Mean NLL of a parallel graph over ids (B, L), fed in windows (<= its max_seq_len) with carried state."""
    return float(parallel_token_nll(graph, ids, window).mean()) if ids.shape[1] > 1 else 0.0


def graph_nll(graph: GraphSession, ids: np.ndarray) -> float:
    """Mean NLL of either kind of graph over ids (B, L)."""
    return step_nll(graph, ids) if graph.info.kind == "step" else parallel_nll(graph, ids)
