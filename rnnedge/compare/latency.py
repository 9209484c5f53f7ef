"""Step latency at a position t of a stream: the t-th token's step, timed from the state the stream
really has after t − 1 tokens (for attention, a cache holding them).

The stream is fed text up to each position once; there the state is snapshot, and the same step is
timed `samples` times, the snapshot restored before each (outside the timing), so every sample is
the step at exactly position t. Times are StepSession.feed calls (batch 1), like `rnnedge bench`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnedge.runtime import StepSession
from rnnedge.runtime.bench import percentiles_us

WARMUP = 10  # untimed steps from each snapshot before the timed ones


def step_latency_at(
    path: Path, positions: Sequence[int], samples: int, threads: int, ids: np.ndarray
) -> dict[str, dict[str, float]]:
    """{str(t): {p50, p99, mean} µs} of the step graph at `path` for each t in `positions` (1-based).

    `ids` (N,) is the text the stream reads (cycled when shorter than the last position).
    """
    session = StepSession(path, threads=threads)
    text = np.asarray(ids, np.int64)  # (N,)
    clock = time.perf_counter_ns
    fed = 0
    out: dict[str, dict[str, float]] = {}
    for t in sorted(positions):
        while fed < t - 1:
            session.feed(int(text[fed % len(text)]), copy=False)
            fed += 1
        snapshot = session.state
        token = int(text[fed % len(text)])
        times = np.empty(samples, np.int64)  # (samples,) ns
        for i in range(WARMUP + samples):
            session.state = snapshot
            start = clock()
            session.feed(token, copy=False)
            if i >= WARMUP:
                times[i - WARMUP] = clock() - start
        session.state = snapshot  # the stream goes on from the snapshot (t − 1 tokens read)
        out[str(t)] = percentiles_us(times)
    return out
