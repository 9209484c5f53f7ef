"""Tiny inputs built once per session: a trained checkpoint, its export with one precision variant,
an earlier drift report, and the text. Tests damage private copies (support.copy_inputs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rnnedge.drift import run_drift, write_report
from rnnedge.exporter import export_model
from rnnedge.quantization import quantize_export
from rnnedge.training.config import TrainConfig
from rnnedge.training.train import train
from tests.conftest import TEXT
from tests.faults.killpoints import ForkServer
from tests.faults.support import Inputs, copy_inputs

TINY = TrainConfig(
    n_layers=1, d_model=16, seq_len=16, batch_size=4, steps=2, warmup=1, eval_every=2, eval_batches=1, threads=1
)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shared, never modified inputs (tests copy them before damaging anything)."""
    root = tmp_path_factory.mktemp("faults-world")
    text = root / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    ckpt = train(TINY, text, root / "ckpt", quiet=True).out_dir
    export = export_model(ckpt, root / "export", max_seq_len=64, simplify=False).out_dir
    quantize_export(export, "int8-dynamic", eval_text=text)
    report = root / "report"
    write_report(
        [run_drift(export, TEXT, steps=16, streams=1, gen_steps=4)],
        report,
        {"data": "text.txt", "steps": 16, "streams": 1},
    )
    return {"root": root, "ckpt": ckpt, "export": export, "text": text, "report": report}


@pytest.fixture
def inputs(world: dict[str, Path], tmp_path: Path) -> Inputs:
    """This test's own copies of the checkpoint, export and text under tmp_path/work."""
    return copy_inputs(world, tmp_path / "work")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    """A fork server (tests/faults/forkrun.py) per test module: rnnedge runs without Python's start-up."""
    fork = ForkServer(tmp_path_factory.mktemp("forkrun") / "stderr.txt")
    yield fork
    fork.close()
