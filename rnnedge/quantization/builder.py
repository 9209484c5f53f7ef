"""Variant builders: the handler of each recipe type, registered with `@handles(RecipeType)`.

A builder turns one fp32 rnnedge graph into variant bytes with ONNX Runtime's own tools. Everything
done once per graph (graph rewrites, pre-processing, calibration ranges) happens in `__init__`/
`prepare`, so `build(keep_float)` can run many times (the sensitivity ranking and the loss budget
rebuild with other nodes kept float). Every built model carries rnnedge metadata describing itself
as the variant (`rnnedge.variant`, `rnnedge.recipe`, `rnnedge.quantization`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import onnx

from rnnedge import __version__
from rnnedge.errors import ConfigError, RnnedgeError
from rnnedge.graphmeta import PREFIX, GraphInfo, StateInfo
from rnnedge.quantization.graph_edits import node_labels, node_params, quantizable_nodes
from rnnedge.quantization.recipes import Recipe
from rnnedge.tool_output import tool_output

Feed = dict[str, np.ndarray]
FLOAT_OPS_NEVER_CONVERTED = ("LSTM", "GRU", "RNN", "Conv")  # left alone by every recipe's op list


class VariantBuilder(ABC):
    """Makes one recipe's variant of one fp32 graph. Subclasses implement `convert`."""

    op_types: ClassVar[tuple[str, ...]] = ("MatMul", "Gemm", "Gather")  # weight nodes the recipe converts
    tensorrt_graphs: ClassVar[tuple[str, ...]] = ()  # graph kinds whose variant must pass the TensorRT rules

    def __init__(
        self, recipe: Recipe, proto: onnx.ModelProto, info: GraphInfo, workdir: Path, feeds: list[Feed] | None
    ) -> None:
        self.recipe = recipe
        self.info = info
        self.workdir = workdir
        self.feeds = feeds or []
        self.proto = onnx.ModelProto.FromString(proto.SerializeToString())  # a private copy
        self.labels = node_labels(self.proto)  # before any rewrite: labels name the model parameters
        self.params = node_params(self.proto)  # node name -> parameter path (what --keep-float globs match)
        self.not_converted_ops = sorted({n.op_type for n in self.proto.graph.node} & set(FLOAT_OPS_NEVER_CONVERTED))
        self.prepare()
        self.candidates = quantizable_nodes(self.proto, self.op_types)

    def prepare(self) -> None:  # noqa: B027 - an optional hook, not every recipe rewrites the graph
        """Once per graph: rewrite `self.proto` for the tool (e.g. Gemm -> MatMul)."""

    @abstractmethod
    def convert(self, keep_float: list[str]) -> onnx.ModelProto:
        """The variant model (rnnedge metadata not yet set) with `keep_float` node names left fp32."""

    def excluded(self, keep_float: list[str]) -> list[str]:
        """Nodes the tool must leave alone: `keep_float`, and nodes of `op_types` that carry no weight
        (e.g. a Gather selecting logits, a MatMul of two activations)."""
        never = {n.name for n in self.proto.graph.node if n.op_type in self.op_types} - set(self.candidates)
        return sorted(never | set(keep_float))

    def details(self) -> dict[str, Any]:
        """What this recipe does to the graph (format, dtypes, options), for `rnnedge.quantization`."""
        return {}

    @property
    def changes_io_dtype(self) -> bool:
        """True when the variant's float inputs/outputs are float16 instead of float32."""
        return False

    def variant_states(self) -> tuple[StateInfo, ...]:
        """The variant's state contract: the fp32 one unless the recipe changes state dtypes."""
        return self.info.states

    def describe(self, keep_float: list[str]) -> dict[str, Any]:
        return {
            "variant": self.recipe.name,
            **self.details(),
            "converted_nodes": len([c for c in self.candidates if c not in keep_float]),
            "kept_float": list(keep_float),
            "kept_float_labels": [self.labels.get(n, n) for n in keep_float],
            "not_converted_ops": self.not_converted_ops,
        }

    def variant_info(self, quantization: dict[str, Any]) -> GraphInfo:
        """The fp32 graph's GraphInfo (config, vocab, states) as this recipe's variant."""
        return dataclasses.replace(
            self.info,
            version=__version__,
            variant=self.recipe.name,
            recipe=self.recipe.to_dict(),
            quantization=quantization,
            states=self.variant_states(),
        )

    def build(self, keep_float: list[str], quantization: dict[str, Any] | None = None) -> bytes:
        """Serialized variant with its metadata; `quantization` defaults to `describe(keep_float)`."""
        try:
            with tool_output(self.workdir) as out:
                model = self.convert(sorted(keep_float))
        except RnnedgeError:
            raise
        except Exception as exc:  # the tools raise plain Exceptions, AssertionErrors, ...
            why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise RnnedgeError(
                f"ONNX Runtime could not make the {self.recipe.name} {self.info.kind} graph: {why}"
                + (f" (tool output: {out.last_line()})" if out.last_line() else "")
            ) from exc
        return stamp(model, self.variant_info(quantization or self.describe(sorted(keep_float))))


def stamp(model: onnx.ModelProto, info: GraphInfo) -> bytes:
    """`model` with its rnnedge metadata replaced by `info`'s (other metadata kept), serialized.

    ONNX Runtime's quantizers write `value_info` with the symbolic batch/time dims; it goes, as in the
    exporter (exporter/portable.py), so a runtime given fixed shapes (tract) takes the variant as it is.
    """
    del model.graph.value_info[:]
    others = {p.key: p.value for p in model.metadata_props if not p.key.startswith(PREFIX)}
    del model.metadata_props[:]
    for key, value in {**others, **info.to_metadata()}.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


HANDLERS: dict[type[Recipe], type[VariantBuilder]] = {}
B = TypeVar("B", bound=type[VariantBuilder])


def handles(recipe_type: type[Recipe]) -> Callable[[B], B]:
    """Class decorator: register a VariantBuilder as the handler of `recipe_type`."""

    def register(builder: B) -> B:
        if recipe_type in HANDLERS:
            raise ValueError(f"{recipe_type.__name__} already has a handler ({HANDLERS[recipe_type].__name__})")
        HANDLERS[recipe_type] = builder
        return builder

    return register


def handler_of(recipe: Recipe) -> type[VariantBuilder]:
    """The builder class registered for `type(recipe)`; ConfigError if there is none."""
    builder = HANDLERS.get(type(recipe))
    if builder is None:
        raise ConfigError(f"recipe {recipe.name} ({type(recipe).__name__}) has no handler in this rnnedge")
    return builder
