"""Shared helpers for the quantization tests: tiny exported model folders (no tests here).

Uses `rnnedge.exporter.export_model` when it is available, else traces the two graphs directly
(the snippet from the exporter contract) and writes the same metadata and manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch

from rnnedge.graphmeta import GRAPH_FILES, INPUT_IDS, LOGITS, MANIFEST, GraphInfo, states_for
from rnnedge.models import ModelConfig, build_model
from rnnedge.models.lm import fixed_scan_levels
from rnnedge.vocab import CharVocab

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n"
) * 12


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
        logits, ns = self.m(idx.unsqueeze(1), st)
        return (logits[:, 0], *ns)


def _trace(model, cfg: ModelConfig, vocab: CharVocab, out: Path) -> None:
    states = states_for(cfg.state_spec())
    ins = [s.input for s in states]
    outs = [s.output for s in states]
    axes = {n: {0: "batch"} for n in ins + outs}
    for kind, wrapper, idx in (
        ("parallel", _Par(model), torch.zeros(2, 8, dtype=torch.long)),
        ("step", _Step(model), torch.zeros(2, dtype=torch.long)),
    ):
        dyn = dict(axes)
        dyn[INPUT_IDS] = {0: "batch", 1: "time"} if kind == "parallel" else {0: "batch"}
        dyn[LOGITS] = {0: "batch", 1: "time"} if kind == "parallel" else {0: "batch"}
        path = out / GRAPH_FILES[kind]
        with fixed_scan_levels(model, 7), torch.no_grad():
            torch.onnx.export(
                wrapper,
                (idx, *model.init_state(2)),
                str(path),
                input_names=[INPUT_IDS, *ins],
                output_names=[LOGITS, *outs],
                dynamic_axes=dyn,
                opset_version=17,
                dynamo=False,
            )
        proto = onnx.load(str(path))
        info = GraphInfo(kind, vocab, cfg.to_dict(), states, "test", 128 if kind == "parallel" else None)
        for k, v in info.to_metadata().items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(path))
    (out / MANIFEST).write_text(json.dumps({"config": cfg.to_dict(), "vocab": vocab.chars}))


def make_export(
    out: Path, arch: str = "mingru", d_model: int = 32, n_layers: int = 2, seed: int = 0, train_steps: int = 12
) -> Path:
    """A tiny model (briefly fitted to TEXT so losses mean something) exported into `out`."""
    vocab = CharVocab.from_text(TEXT + "xyzXYZ!")
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=len(vocab), arch=arch, n_layers=n_layers, d_model=d_model)
    model = build_model(cfg)
    ids = torch.tensor(vocab.encode(TEXT))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(train_steps):
        starts = torch.randint(0, len(ids) - 33, (8,))
        batch = torch.stack([ids[s : s + 33] for s in starts.tolist()])
        logits, _ = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    try:
        from rnnedge.exporter import export_model
        from rnnedge.training.checkpoint import save_checkpoint
    except ImportError:  # exporter not available: trace the graphs here
        out.mkdir(parents=True, exist_ok=True)
        _trace(model, cfg, vocab, out)
        return out
    ckpt = out.parent / f"{out.name}-ckpt"
    save_checkpoint(ckpt, model, vocab)
    export_model(ckpt, out, max_seq_len=128, verify=False)
    return out
