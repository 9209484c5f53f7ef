"""Tiny exported models for the drift tests (torch lives in the test code only)."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from rnnedge.graphmeta import INPUT_IDS, LOGITS, GraphInfo, states_for
from rnnedge.models import ModelConfig, build_model
from rnnedge.vocab import CharVocab

TEXT = (
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n"
    "Or to take arms against a sea of troubles\n"
    "And by opposing end them. To die: to sleep;\n"
) * 6


class _Step(torch.nn.Module):
    def __init__(self, m: torch.nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, idx: torch.Tensor, *st: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, ns = self.m(idx.unsqueeze(1), st)
        return (logits[:, 0], *ns)


def export_step(
    out: Path,
    arch: str = "mingru",
    d_model: int = 16,
    n_layers: int = 1,
    seed: int = 0,
    text: str = TEXT,
    scale: float = 1.0,
) -> Path:
    """Write out/step.onnx (with rnnedge metadata) for a random tiny model; returns out."""
    torch.manual_seed(seed)
    vocab = CharVocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), arch=arch, n_layers=n_layers, d_model=d_model)
    model = build_model(cfg).eval()
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
    states = states_for(cfg.state_spec())
    out.mkdir(parents=True, exist_ok=True)
    path = out / "step.onnx"
    idx = torch.zeros(2, dtype=torch.int64)
    dyn = {n: {0: "batch"} for n in [INPUT_IDS, LOGITS] + [s.input for s in states] + [s.output for s in states]}
    with torch.no_grad():
        torch.onnx.export(
            _Step(model),
            (idx, *model.init_state(2)),
            str(path),
            input_names=[INPUT_IDS] + [s.input for s in states],
            output_names=[LOGITS] + [s.output for s in states],
            dynamic_axes=dyn,
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    info = GraphInfo(kind="step", vocab=vocab, config=cfg.to_dict(), states=states, version="test")
    for k, v in info.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))
    return out


def quantize_step(folder: Path) -> Path:
    """step.int8.onnx beside step.onnx via ORT's dynamic quantizer (weights int8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / "step.int8.onnx"
    quantize_dynamic(str(folder / "step.onnx"), str(target), weight_type=QuantType.QInt8)
    return target


def fake_int8(folder: Path) -> Path:
    """An "int8" graph that is the fp32 graph itself (zero error expected)."""
    target = folder / "step.int8.onnx"
    target.write_bytes((folder / "step.onnx").read_bytes())
    return target
