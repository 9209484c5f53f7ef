"""Held-out loss of a graph (fp32 or variant) through rnnedge.inference: the one number a recipe is judged by."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import numpy as np

from rnnedge.inference import GraphSession, open_graph, streams_of
from rnnedge.inference.loop import graph_nll
from rnnedge.inference.sessions import Source

STREAMS = 8  # the step graph is run as 8 streams at different offsets; the parallel graph in windows


_THREADS: contextvars.ContextVar[int] = contextvars.ContextVar("rnnedge_quantize_threads", default=1)


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Within the block, every session `open_checked` opens uses `n` intra-op threads (default 1)."""
    token = _THREADS.set(n)
    try:
        yield
    finally:
        _THREADS.reset(token)


def open_checked(source: Source, kind: str | None = None) -> GraphSession:
    """A CPU session of an rnnedge graph (file or bytes), I/O checked against its metadata; single-threaded
    unless inside `threads(n)`, idle threads not spinning."""
    return open_graph(source, kind, threads=_THREADS.get(), spinning=False)


def held_out_loss(graph: GraphSession | Source, ids: np.ndarray) -> float:
    """Mean NLL (nats/char) of one graph on ids (N,), split into STREAMS streams, state carried from zero."""
    session = graph if isinstance(graph, GraphSession) else open_checked(graph)
    return graph_nll(session, streams_of(ids, STREAMS))
