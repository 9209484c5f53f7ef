"""Held-out loss of a graph (fp32 or variant) through rnnedge.inference: the one number a recipe is judged by."""

from __future__ import annotations

import numpy as np

from rnnedge.inference import GraphSession, open_graph, streams_of
from rnnedge.inference.loop import graph_nll
from rnnedge.inference.sessions import Source

STREAMS = 8  # the step graph is run as 8 streams at different offsets; the parallel graph in windows


def open_checked(source: Source, kind: str | None = None) -> GraphSession:
    """A single-threaded CPU session of an rnnedge graph (file or bytes), I/O checked against its metadata."""
    return open_graph(source, kind, threads=1, spinning=False)


def held_out_loss(graph: GraphSession | Source, ids: np.ndarray) -> float:
    """Mean NLL (nats/char) of one graph on ids (N,), split into STREAMS streams, state carried from zero."""
    session = graph if isinstance(graph, GraphSession) else open_checked(graph)
    return graph_nll(session, streams_of(ids, STREAMS))
