"""What each `rnnedge compare` argument is (a checkpoint or an export folder), read without torch, and
whether the models can be compared at all; every problem is one line before any long work starts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnedge.errors import GraphError, RnnedgeError
from rnnedge.graphmeta import FP32, graph_file, list_variants
from rnnedge.inference import open_graph
from rnnedge.vocab import CharVocab

CHECKPOINT, EXPORT = "checkpoint", "export"
CHECKPOINT_FORMAT = "rnnedge-checkpoint"  # rnnedge.training.checkpoint.FORMAT
# What a checkpoint's training record says about its budget (rnnedge.training.train writes these).
TRAINING_KEYS = ("steps_done", "tokens_seen", "train_time_s", "val_loss", "num_params", "world_size")


@dataclass(frozen=True)
class Source:
    """One model to compare: where it is, what it is, its vocabulary, config and training budget."""

    name: str
    path: Path
    kind: str  # CHECKPOINT | EXPORT
    vocab: CharVocab
    config: dict[str, Any]  # the model config (vocab_size, arch, n_layers, d_model, ...)
    training: dict[str, Any] | None  # a checkpoint's budget (TRAINING_KEYS), None for an export

    @property
    def arch(self) -> str:
        return str(self.config.get("arch", "?"))


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Each path's folder name; repeated names get #1, #2, ... (names are also export folder names)."""
    names = [p.resolve().name or str(p) for p in paths]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


def _checkpoint(path: Path, name: str) -> Source:
    try:
        meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RnnedgeError(f"cannot read the checkpoint config {path / 'config.json'}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise RnnedgeError(f"{path / 'config.json'} is not an rnnedge checkpoint config")
    model, chars, training = meta.get("model"), meta.get("vocab"), meta.get("training")
    if not isinstance(model, dict) or not isinstance(chars, str):
        raise RnnedgeError(f"{path / 'config.json'} lacks its model config or vocabulary")
    budget = {k: training[k] for k in TRAINING_KEYS if k in training} if isinstance(training, dict) else {}
    return Source(name, path, CHECKPOINT, CharVocab(chars), model, budget)


def _export(path: Path, name: str) -> Source:
    info = open_graph(path / graph_file("step", FP32), kind="step").info
    return Source(name, path, EXPORT, info.vocab, dict(info.config), None)


def read_source(path: Path, name: str) -> Source:
    """A checkpoint folder (config.json) or an export folder (step.onnx); RnnedgeError for anything else."""
    if not path.is_dir():
        raise RnnedgeError(f"{path} is not a folder (expected a checkpoint or an export folder)")
    if (path / "config.json").is_file():
        return _checkpoint(path, name)
    variants = list_variants(path)
    if "step" in variants.get(FP32, {}):
        return _export(path, name)
    if variants:
        raise GraphError(f"{path} has no fp32 step.onnx (only {', '.join(variants)}); compare needs the fp32 graphs")
    raise RnnedgeError(f"{path} is neither a checkpoint (config.json) nor an export folder (step.onnx)")


def check_comparable(sources: Sequence[Source]) -> None:
    """RnnedgeError (one line) unless every model reads the same characters (losses are per character of
    one text only when the vocabularies agree)."""
    first = sources[0]
    for s in sources[1:]:
        if s.vocab != first.vocab:
            only_a = sorted(set(first.vocab.chars) - set(s.vocab.chars))
            only_b = sorted(set(s.vocab.chars) - set(first.vocab.chars))
            diff = f"only in {first.name}: {''.join(only_a)!r}; only in {s.name}: {''.join(only_b)!r}"
            raise RnnedgeError(
                f"cannot compare {first.name} and {s.name}: their vocabularies differ "
                f"({len(first.vocab)} vs {len(s.vocab)} characters; {diff}); compare models trained on one text"
            )


def check_variant(source: Source, variant: str) -> None:
    """GraphError (one line) when an export folder lacks the step graph of `variant`; a checkpoint's
    export is quantized on the fly, so it always has it."""
    if source.kind != EXPORT or (source.path / graph_file("step", variant)).is_file():
        return
    present = [v for v, kinds in list_variants(source.path).items() if "step" in kinds and v != FP32]
    raise GraphError(
        f"{source.path} has no {graph_file('step', variant)} (its variants: {', '.join(present) or 'none'}); "
        f"run `rnnedge quantize {source.path} --method {variant} --eval TEXT` or choose another --variant"
    )


def check_outside(source: Source, out: Path) -> None:
    """An export measured in place must not lie inside the report folder, which a re-run rewrites."""
    if source.kind == EXPORT and out.resolve() in (source.path.resolve(), *source.path.resolve().parents):
        raise RnnedgeError(f"{source.path} lies inside --out {out}; copy it elsewhere or choose another --out")
