"""Tiny exported models for the runtime tests (torch + onnx are fine in TEST code).

Uses `rnnedge.exporter.export_model` when it exists, else a local TorchScript export that follows
the rnnedge.graphmeta contract (same file names, input/output names and metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from rnnedge import __version__
from rnnedge.graphmeta import INPUT_IDS, LOGITS, GraphInfo, states_for
from rnnedge.models import fixed_scan_levels
from rnnedge.training.checkpoint import save_checkpoint
from rnnedge.vocab import CharVocab
from tests.conftest import TEXT, tiny_model

VOCAB = CharVocab.from_text(TEXT)
LEVELS = 10  # the local fallback's parallel graph is exact for T <= 1024


class _Par(torch.nn.Module):
    def __init__(self, m: torch.nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, idx, *st):
        logits, ns = self.m(idx, st)
        return (logits, *ns)


class _Step(torch.nn.Module):
    def __init__(self, m: torch.nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, idx, *st):
        logits, ns = self.m(idx[:, None], st)
        return (logits[:, 0], *ns)


def _fallback_export(model, out: Path) -> None:
    cfg = model.config
    states = states_for(cfg.state_spec())
    ins = [s.input for s in states]
    outs = [s.output for s in states]
    axes = {INPUT_IDS: {0: "batch", 1: "time"}, LOGITS: {0: "batch", 1: "time"}}
    axes.update({n: {0: "batch"} for n in ins + outs})
    out.mkdir(parents=True, exist_ok=True)
    for kind, wrapper, idx, levels in (
        ("parallel", _Par(model), torch.zeros(2, 5, dtype=torch.long), LEVELS),
        ("step", _Step(model), torch.zeros(2, dtype=torch.long), None),
    ):
        path = out / f"{kind}.onnx"
        kind_axes = dict(axes)
        if kind == "step":
            kind_axes[INPUT_IDS] = {0: "batch"}
            kind_axes[LOGITS] = {0: "batch"}
        with fixed_scan_levels(model, levels), torch.no_grad():
            torch.onnx.export(
                wrapper,
                (idx, *model.init_state(2)),
                str(path),
                input_names=[INPUT_IDS, *ins],
                output_names=[LOGITS, *outs],
                dynamic_axes=kind_axes,
                opset_version=17,
                dynamo=False,
            )
        info = GraphInfo(
            kind=kind,
            vocab=VOCAB,
            config=cfg.to_dict(),
            states=states,
            version=__version__,
            max_seq_len=2**LEVELS if kind == "parallel" else None,
        )
        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, info.to_metadata())
        onnx.save(proto, str(path))
    (out / "manifest.json").write_text(json.dumps({"checkpoint": str(out.parent / "ckpt")}))


def make_export(root: Path, arch: str = "mingru", d_model: int = 16, n_layers: int = 2, seed: int = 0) -> Path:
    """Checkpoint in root/ckpt and its export in root/export; returns the export folder."""
    model = tiny_model(arch, vocab_size=len(VOCAB), n_layers=n_layers, d_model=d_model, seed=seed)
    ckpt = root / "ckpt"
    save_checkpoint(ckpt, model, VOCAB)
    out = root / "export"
    try:
        from rnnedge.exporter import export_model
    except ImportError:
        _fallback_export(model, out)
    else:
        export_model(ckpt, out, max_seq_len=1024, verify=False)
    return out


def make_int8(export: Path) -> Path:
    """A dynamic int8 step graph beside step.onnx (metadata kept)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = export / "step.onnx", export / "step.int8.onnx"
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    meta["rnnedge.quantization"] = json.dumps({"method": "dynamic", "weights": "int8"})
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


ARCHS = ("mingru", "minlstm", "gru", "lstm")


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> dict[str, Path]:
    """arch -> root folder holding ckpt/ and export/ (export/ of mingru also has step.int8.onnx).

    Built once per test session even though several test modules import this fixture.
    """
    if not _BUILT:
        for arch in ARCHS:
            root = tmp_path_factory.mktemp(f"rt_{arch}")
            make_export(root, arch)
            _BUILT[arch] = root
        make_int8(_BUILT["mingru"] / "export")
    return dict(_BUILT)


def test_fixture_exports_follow_the_contract(exports) -> None:
    for root in exports.values():
        for name in ("step.onnx", "parallel.onnx", "manifest.json"):
            assert (root / "export" / name).is_file()
