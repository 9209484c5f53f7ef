"""`rnnedge.export(module, states=..., tokenizer=..., out=...)`: a user's recurrent LM through the same
exporter as rnnedge's own models (parallel + step graphs, every ONNX Runtime check, metadata, manifest)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from rnnedge.byom import checks
from rnnedge.byom.protocol import ProtocolConfig, ProtocolLM, graph_state, linear_products
from rnnedge.errors import ConfigError
from rnnedge.exporter.export import ExportResult, export_checked
from rnnedge.models.spec import StateSpec, WeightProduct
from rnnedge.tokenizer import TOKENIZER_FILE, HFTokenizer, Tokenizer, resolve
from rnnedge.training.checkpoint import Checkpoint


def wrap(
    module: nn.Module,
    states: Sequence[StateSpec],
    vocab_size: int,
    *,
    arch: str = "custom",
    atol: float = 1e-4,
    products: Sequence[WeightProduct] | None = None,
    extra: dict[str, Any] | None = None,
) -> ProtocolLM:
    """The module as the exporter sees it (states batch-first, named `<layer>.<name>`), after the checks
    that need no tracing: finite weights, states and logits exactly as declared, step == parallel."""
    if not isinstance(module, nn.Module):
        raise ConfigError(f"module must be a torch.nn.Module, not {type(module).__name__}")
    if not states:
        raise ConfigError("states is empty: a recurrent LM declares at least one state (a StateSpec)")
    infos = tuple(graph_state(s) for s in states)
    names = [s.name for s in infos]
    if len(set(names)) != len(names):
        raise ConfigError(f"state names repeat: {names}")
    prods = tuple(products) if products is not None else linear_products(module)
    costs = {  # what `rnnedge compare` reports for a model it cannot rebuild from an rnnedge config
        "params": sum(p.numel() for p in module.parameters()),
        "macs_per_token": sum(int(k) * int(n) for _, k, n in prods),
    }
    cfg = ProtocolConfig(arch, int(vocab_size), infos, prods, float(atol), {**costs, **(extra or {})})
    lm = ProtocolLM(module.eval(), states, cfg).eval()
    checks.check_finite(lm)
    checks.check_shapes(lm, cfg.vocab_size)
    checks.check_step_matches_parallel(lm, cfg.vocab_size, cfg.atol)
    return lm


def export(
    module: nn.Module,
    *,
    states: Sequence[StateSpec],
    tokenizer: Tokenizer | str | os.PathLike[str],
    out: str | os.PathLike[str],
    arch: str = "custom",
    atol: float = 1e-4,
    products: Sequence[WeightProduct] | None = None,
    opset: int = 17,
    max_seq_len: int = 65536,
    simplify: bool = True,
    ort_format: bool = False,
    source: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export a user's recurrent LM to out/{parallel,step}.onnx + manifest.json (+ tokenizer.json).

    `module(ids (B, T) int64, states tuple) -> (logits (B, T, V), states tuple)` in the order and shapes
    of `states` (rnnedge StateSpec: name, full shape with 'batch', dtype, kind). `tokenizer`: a CharVocab,
    'bytes', 'char:<characters>' or a Hugging Face tokenizers JSON path; V must equal its size.
    `atol`: the verification tolerance; `products`: the (name, k, n) weight products of one token
    (default: read off the module's Linear / RNN layers). Refused with one line, before anything is
    written: NaN/inf weights, states or logits not as declared, step and parallel forms that disagree,
    and every ONNX Runtime check the exporter runs (rnnedge/exporter/verify.py).
    After this, `rnnedge quantize`, `drift`, `eval`, `generate`, `bench` and rnnedge.runtime take `out`.
    A non-empty `out` without rnnedge's ledger is refused unless `overwrite` (rnnedge/ownership.py).
    """
    tok = resolve(tokenizer)
    modes = [(m, m.training) for m in module.modules()] if isinstance(module, nn.Module) else []
    try:  # torch.onnx.export leaves the traced tree in train mode: the user's module gets its own modes back
        lm = wrap(module, states, len(tok), arch=arch, atol=atol, products=products)
        files = {TOKENIZER_FILE: tok.file_bytes()} if isinstance(tok, HFTokenizer) else {}
        kind = getattr(tok, "kind", "char")
        info = {"byom": True, "tokenizer": kind, "module": type(module).__name__, **(source or {})}
        return export_checked(
            Checkpoint(model=lm, vocab=tok, path=None),  # type: ignore[arg-type]
            out,
            opset=opset,
            max_seq_len=max_seq_len,
            simplify=simplify,
            ort_format=ort_format,
            extra_files=files,
            source=info,
            overwrite=overwrite,
        )
    finally:
        for m, training in modes:
            m.train(training)
