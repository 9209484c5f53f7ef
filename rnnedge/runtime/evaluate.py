"""Loss and bits/char of an exported model (what `rnnedge eval DIR` runs): its parallel graph, or the
step graph when a precision variant has no parallel graph."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rnnedge.errors import InputError
from rnnedge.graphmeta import FP32, graph_file
from rnnedge.inference import open_graph, step_nll
from rnnedge.inference.providers import ProviderArg
from rnnedge.runtime.parallel import ParallelSession, loss_summary


def evaluate_export(
    export_dir: str | os.PathLike[str],
    text: str,
    variant: str = FP32,
    on_unknown: str = "error",
    chunk: int | None = None,
    threads: int | None = None,
    providers: ProviderArg = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """{loss_nats, bits_per_char, chars, graph} for predicting text[1:] from text[:-1], mean over predicted chars.

    `export_dir` is an export folder (`variant` picks `parallel.<variant>.onnx`) or a parallel .onnx
    file. A variant with a step graph but no parallel graph (e.g. a step-only recipe) is scored
    token by token through `step.<variant>.onnx` (`graph` says which ran; `chunk` does not apply).
    Same convention as PyTorch evaluation of the checkpoint, which it matches to ~1e-6.
    `progress(done, total)`: characters scored so far (the parallel graph's chunks).
    """
    folder = Path(export_dir)
    if folder.is_dir() and not (folder / graph_file("parallel", variant)).is_file():
        step_file = folder / graph_file("step", variant)
        if step_file.is_file():
            return {**_step_loss(step_file, text, on_unknown, threads, providers), "graph": step_file.name}
    session = ParallelSession(export_dir, chunk=chunk, providers=providers, threads=threads, variant=variant)
    return {**session.evaluate_text(text, on_unknown=on_unknown, progress=progress), "graph": session.path.name}


def _step_loss(
    path: Path, text: str, on_unknown: str, threads: int | None, providers: ProviderArg
) -> dict[str, float | int]:
    graph = open_graph(path, "step", providers, threads)
    ids = graph.info.vocab.encode(text, on_unknown=on_unknown)
    if ids.size < 2:
        raise InputError(f"text too short to evaluate: {ids.size} known character(s), need at least 2")
    return loss_summary(step_nll(graph, ids[None]), ids.size - 1, graph.info.vocab, ids)
