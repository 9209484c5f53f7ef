"""Loss and bits/char of an exported model through its parallel graph (what `rnnedge eval DIR` runs)."""

from __future__ import annotations

import os

from rnnedge.runtime.parallel import ParallelSession


def evaluate_export(
    export_dir: str | os.PathLike[str],
    text: str,
    int8: bool = False,
    on_unknown: str = "error",
    chunk: int | None = None,
    threads: int | None = None,
    providers: str | list[str] | None = None,
) -> dict[str, float | int]:
    """{loss_nats, bits_per_char, chars} for predicting text[1:] from text[:-1], mean over predicted chars.

    `export_dir` is an export folder (parallel.onnx, or parallel.int8.onnx with int8=True) or a parallel
    .onnx file. Same convention as PyTorch evaluation of the checkpoint, which it matches to ~1e-6.
    """
    session = ParallelSession(export_dir, chunk=chunk, providers=providers, threads=threads, int8=int8)
    return session.evaluate_text(text, on_unknown=on_unknown)
