"""The contract between the exporter and everything downstream (torch-free, onnx-free).

An exported folder holds `parallel.onnx` and `step.onnx` (+ `*.int8.onnx` after quantization) and
`manifest.json`. Each .onnx carries its own description in metadata_props, so a runtime needs
nothing but the file:

    rnnedge.version   package version that wrote it
    rnnedge.graph     "parallel" | "step"
    rnnedge.vocab     the characters, in token-id order
    rnnedge.config    model config (JSON)
    rnnedge.states    JSON list of {"name", "input", "output", "shape"}; shape = ["batch", width]
    rnnedge.max_seq_len   parallel only: longest T the fixed-depth scan is exact for
    rnnedge.quantization  int8 only: JSON description of how it was quantized

Inputs:  input_ids int64 [batch, time] (parallel) or [batch] (step), then state_in.<layer>.<name>
Outputs: logits float32 [batch, time, vocab] or [batch, vocab], then state_out.<layer>.<name>
(same order and shapes as the state inputs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rnnedge.errors import GraphError
from rnnedge.vocab import CharVocab

INPUT_IDS = "input_ids"
LOGITS = "logits"
GRAPH_KINDS = ("parallel", "step")
GRAPH_FILES = {"parallel": "parallel.onnx", "step": "step.onnx"}
INT8_FILES = {"parallel": "parallel.int8.onnx", "step": "step.int8.onnx"}
MANIFEST = "manifest.json"
PREFIX = "rnnedge."


def state_input_name(state: str) -> str:
    return f"state_in.{state}"


def state_output_name(state: str) -> str:
    return f"state_out.{state}"


@dataclass(frozen=True)
class StateInfo:
    name: str  # e.g. "0.h"
    input: str  # graph input name
    output: str  # graph output name
    width: int

    @property
    def layer(self) -> int:
        return int(self.name.split(".", 1)[0])


@dataclass(frozen=True)
class GraphInfo:
    """What an rnnedge .onnx file says about itself."""

    kind: str
    vocab: CharVocab
    config: dict[str, Any]
    states: tuple[StateInfo, ...]
    version: str
    max_seq_len: int | None = None
    quantization: dict[str, Any] | None = None

    @property
    def arch(self) -> str:
        return str(self.config.get("arch", "?"))

    def to_metadata(self) -> dict[str, str]:
        """The metadata_props entries (all strings) that describe this graph."""
        meta = {
            PREFIX + "version": self.version,
            PREFIX + "graph": self.kind,
            PREFIX + "vocab": self.vocab.chars,
            PREFIX + "config": json.dumps(self.config, sort_keys=True),
            PREFIX + "states": json.dumps(
                [
                    {"name": s.name, "input": s.input, "output": s.output, "shape": ["batch", s.width]}
                    for s in self.states
                ]
            ),
        }
        if self.max_seq_len is not None:
            meta[PREFIX + "max_seq_len"] = str(self.max_seq_len)
        if self.quantization is not None:
            meta[PREFIX + "quantization"] = json.dumps(self.quantization, sort_keys=True)
        return meta


def states_for(state_spec: list[tuple[str, int]]) -> tuple[StateInfo, ...]:
    """StateInfo for each (name, width) of ModelConfig.state_spec()."""
    return tuple(StateInfo(n, state_input_name(n), state_output_name(n), w) for n, w in state_spec)


def parse_metadata(meta: Mapping[str, str], source: str = "graph") -> GraphInfo:
    """GraphInfo from metadata_props (onnx) or ORT's custom_metadata_map; GraphError if not rnnedge's."""
    if PREFIX + "graph" not in meta:
        raise GraphError(f"{source} has no rnnedge metadata (was it written by `rnnedge export`?)")
    try:
        kind = meta[PREFIX + "graph"]
        if kind not in GRAPH_KINDS:
            raise GraphError(f"{source}: unknown graph kind {kind!r}")
        states = tuple(
            StateInfo(str(s["name"]), str(s["input"]), str(s["output"]), int(s["shape"][1]))
            for s in json.loads(meta[PREFIX + "states"])
        )
        quant = meta.get(PREFIX + "quantization")
        max_len = meta.get(PREFIX + "max_seq_len")
        return GraphInfo(
            kind=kind,
            vocab=CharVocab(meta[PREFIX + "vocab"]),
            config=json.loads(meta[PREFIX + "config"]),
            states=states,
            version=meta.get(PREFIX + "version", "?"),
            max_seq_len=int(max_len) if max_len is not None else None,
            quantization=json.loads(quant) if quant else None,
        )
    except GraphError:
        raise
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise GraphError(f"{source} has damaged rnnedge metadata: {exc!r}") from exc
