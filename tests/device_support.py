"""Tiny exports of every mixer with every graph rnnedge writes for a device (no tests here).

`device_exports` (session-scoped, shared by tests/test_device_graphs.py and tests/test_runtimes.py): for
each registered mixer a one-layer d_model-16 model exported twice, `--target mobile` (step.onnx,
parallel.onnx, mobile/step.onnx, and the step/parallel int8-dynamic, int8-qdq and int4-weight variants)
`--target qnn-htp` (qnn-htp/step.onnx) and `--opset 20` (step and parallel with the Gelu op).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rnnedge.exporter import export_model
from rnnedge.models import MIXER_NAMES
from rnnedge.quantization import quantize_export
from rnnedge.training.checkpoint import save_checkpoint
from rnnedge.vocab import CharVocab
from tests.conftest import TEXT, tiny_model

RECIPES = ("int8-dynamic", "int8-qdq", "int4-weight")
MAX_SEQ_LEN = 32  # scan depth 5: chunks below, at and above 2^levels are all exercised
VOCAB = CharVocab.from_text(TEXT)


@dataclass(frozen=True)
class DeviceExport:
    """One mixer's export folders and its device graphs: name -> path (e.g. 'mobile/step.onnx')."""

    arch: str
    folder: Path  # --target mobile, with the variants
    htp: Path  # --target qnn-htp
    opset20: Path  # --opset 20: exact GELU as the Gelu op, no Erf
    graphs: dict[str, Path] = field(default_factory=dict)


def graphs_of(folder: Path, htp: Path, opset20: Path) -> dict[str, Path]:
    """Every graph rnnedge wrote for a device in the folders, keyed by its path relative to them."""
    found = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*.onnx"))}
    found["qnn-htp/step.onnx"] = htp / "qnn-htp" / "step.onnx"
    found |= {f"opset20/{kind}.onnx": opset20 / f"{kind}.onnx" for kind in ("step", "parallel")}
    return found


def build(root: Path, arch: str) -> DeviceExport:
    """Export the tiny `arch` model both ways and quantize it with every recipe."""
    model = tiny_model(arch, vocab_size=len(VOCAB), n_layers=1)
    ckpt = root / f"{arch}-ckpt"
    save_checkpoint(ckpt, model, VOCAB)
    folder, htp, opset20 = root / arch, root / f"{arch}-htp", root / f"{arch}-opset20"
    export_model(ckpt, folder, max_seq_len=MAX_SEQ_LEN, target="mobile", verify=False)
    export_model(ckpt, htp, max_seq_len=MAX_SEQ_LEN, target="qnn-htp", verify=False)
    export_model(ckpt, opset20, max_seq_len=MAX_SEQ_LEN, opset=20, verify=False)
    calib = root / "calib.txt"
    calib.write_text(TEXT[:2000])
    for recipe in RECIPES:
        quantize_export(folder, recipe, calib_text=calib)
    return DeviceExport(arch, folder, htp, opset20, graphs_of(folder, htp, opset20))


_BUILT: dict[str, DeviceExport] = {}  # one build per test session, whichever module asks first


@pytest.fixture(scope="session")
def device_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DeviceExport]:
    if not _BUILT:
        root = tmp_path_factory.mktemp("device-graphs")
        _BUILT.update({arch: build(root, arch) for arch in MIXER_NAMES})
    return _BUILT
