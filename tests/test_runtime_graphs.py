"""Tiny exported models and precision variants for the runtime tests (torch + onnx are fine in TEST code).

Graphs come from `rnnedge.exporter.export_model` (checks skipped: the exporter's tests cover them).
Variant files are made here with onnxruntime's quantize_dynamic plus rnnedge metadata, so these
tests do not depend on rnnedge.quantization's API.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from rnnedge.exporter import export_model
from rnnedge.graphmeta import graph_file
from rnnedge.training.checkpoint import save_checkpoint
from rnnedge.vocab import CharVocab
from tests.conftest import ARCHS, TEXT, tiny_model

VOCAB = CharVocab.from_text(TEXT)
VARIANT = "int8-dynamic"


def make_export(root: Path, arch: str = "mingru", d_model: int = 16, n_layers: int = 2, seed: int = 0) -> Path:
    """Checkpoint in root/ckpt and its export in root/export; returns the export folder."""
    model = tiny_model(arch, vocab_size=len(VOCAB), n_layers=n_layers, d_model=d_model, seed=seed)
    ckpt = root / "ckpt"
    save_checkpoint(ckpt, model, VOCAB)
    out = root / "export"
    export_model(ckpt, out, max_seq_len=1024, verify=False)
    return out


def make_variant(export: Path, kind: str = "step", variant: str = VARIANT, file_name: str | None = None) -> Path:
    """A dynamic int8 `kind.<variant>.onnx` beside the fp32 graph, with the fp32 graph's metadata plus
    rnnedge.variant / rnnedge.recipe / rnnedge.quantization. `file_name` overrides the name (legacy files)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = export / graph_file(kind), export / (file_name or graph_file(kind, variant))
    # The int8-dynamic preset's settings (uint8 weights, per channel): the same result on every CPU. Signed
    # 8-bit weights saturate x86 AVX2's int16 pair sums, and the streams test then fails there (0.41 > 0.056).
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8, per_channel=True)
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    meta["rnnedge.variant"] = variant
    meta["rnnedge.recipe"] = json.dumps({"name": variant, "kind": "dynamic-int8"})
    meta["rnnedge.quantization"] = json.dumps({"method": "dynamic", "weights": "uint8 per channel"})
    proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    onnx.save(proto, str(dst))
    return dst


def torch_model(root: Path):
    from rnnedge.training.checkpoint import load_checkpoint

    return load_checkpoint(root / "ckpt").model.eval()


def torch_step_logits(model, ids: np.ndarray) -> np.ndarray:
    """Logits for each position of ids (B, T) through the torch model, (B, T, V)."""
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(ids))
    return logits.numpy()


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> dict[str, Path]:
    """arch -> root folder holding ckpt/ and export/ (export/ of mingru also has step.int8-dynamic.onnx).

    Built once per test session even though several test modules import this fixture.
    """
    if not _BUILT:
        for arch in ARCHS:
            root = tmp_path_factory.mktemp(f"rt_{arch}")
            make_export(root, arch)
            _BUILT[arch] = root
        make_variant(_BUILT["mingru"] / "export")
    return dict(_BUILT)


def test_fixture_exports_follow_the_contract(exports) -> None:
    for root in exports.values():
        for name in ("step.onnx", "parallel.onnx", "manifest.json"):
            assert (root / "export" / name).is_file()
    assert (exports["mingru"] / "export" / f"step.{VARIANT}.onnx").is_file()
