"""Which two step graphs of an export folder a drift run compares, loaded and checked to belong together.

Files come from the export contract (`graph_file`, `list_variants`): `step.onnx` is the variant "fp32",
`step.<variant>.onnx` any precision variant (rnnedge 0.1's `step.int8.onnx` is simply "int8").
Sessions come from `rnnedge.inference` (no ONNX Runtime set-up here).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnedge.commit import settle
from rnnedge.errors import GraphError, RnnedgeError
from rnnedge.graphmeta import (
    FP32,
    MANIFEST,
    GraphInfo,
    StateInfo,
    check_variant_name,
    graph_file,
    list_variants,
    split_graph_file,
)
from rnnedge.graphweights import WEIGHTS_KEY, file_weights_sha256
from rnnedge.inference import GraphSession, open_graph
from rnnedge.inference.providers import ProviderArg
from rnnedge.io import read_json

FLOAT_DTYPES = ("float32", "float16")


@dataclass(frozen=True, eq=False)
class GraphPair:
    """The baseline and the variant step graph of one export folder."""

    folder: Path
    baseline: GraphSession
    variant: GraphSession

    @property
    def baseline_name(self) -> str:
        return self.baseline.info.variant

    @property
    def variant_name(self) -> str:
        return self.variant.info.variant


def step_variants(folder: Path) -> list[str]:
    """The variants of `folder` that have a step graph (fp32 first, then by name)."""
    return [name for name, files in list_variants(folder).items() if "step" in files]


def choose_variant(folder: Path, variant: str | None, baseline: str) -> str:
    """`variant` if given, else the only step variant besides fp32 and `baseline`; GraphError otherwise."""
    if variant is not None:
        return check_variant_name(variant)
    found = step_variants(folder)
    candidates = [v for v in found if v not in (FP32, baseline)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise GraphError(
            f"{folder} has no precision variant of its step graph to compare with {baseline} "
            f"(found: {', '.join(found) or 'none'}); run `rnnedge quantize {folder}` first"
        )
    raise GraphError(f"{folder} has several step variants ({', '.join(candidates)}); choose one with --variant NAME")


def _graph_path(folder: Path, variant: str, role: str) -> Path:
    path = folder / graph_file("step", variant)
    if not path.is_file():
        found = step_variants(folder)
        hint = f"; run `rnnedge quantize {folder}` first" if variant != FP32 else "; export the model first"
        raise GraphError(
            f"{folder} has no {path.name} for the {role} {variant!r} (step variants found: "
            f"{', '.join(found) or 'none'}){hint}"
        )
    return path


def _open(path: Path, variant: str, threads: int, providers: ProviderArg = None) -> GraphSession:
    graph = open_graph(path, kind="step", providers=providers, threads=threads)
    if graph.info.variant != variant:
        raise GraphError(f"{path} says it is variant {graph.info.variant!r}, but its file name says {variant!r}")
    return graph


def _float32_states(info: GraphInfo) -> GraphInfo:
    """The same info with float16 states read as float32: a precision may change a state's float width."""

    def widen(s: StateInfo) -> StateInfo:
        return dataclasses.replace(s, dtype="float32") if s.dtype in FLOAT_DTYPES else s

    return dataclasses.replace(info, states=tuple(widen(s) for s in info.states))


def describe_difference(a: GraphInfo, b: GraphInfo) -> str:
    """One phrase naming how two graphs' models differ (config, vocabulary or states)."""
    if a.config != b.config:
        keys = sorted(set(a.config) | set(b.config))
        diffs = [f"{k} {a.config.get(k)!r} vs {b.config.get(k)!r}" for k in keys if a.config.get(k) != b.config.get(k)]
        return "config differs: " + ", ".join(diffs)
    if a.vocab != b.vocab:
        return f"vocabularies differ ({len(a.vocab)} vs {len(b.vocab)} characters)"

    def states(info: GraphInfo) -> str:
        return json.dumps([[s.name, list(s.shape), s.dtype, s.kind] for s in info.states])

    return f"state tensors differ: {states(a)} vs {states(b)}"


def check_same_model(baseline: GraphSession, variant: GraphSession) -> None:
    """GraphError unless both graphs come from the same model (the precision, float widths included, may differ)."""
    a, b = _float32_states(baseline.info), _float32_states(variant.info)
    if not a.same_model(b):
        raise GraphError(
            f"{variant.source} comes from a different model than {baseline.source} ({describe_difference(a, b)})"
        )

    def names_and_shapes(g: GraphSession) -> list[tuple[str, tuple[object, ...]]]:
        return sorted((name, shape) for name, _, shape in g.signature())

    if names_and_shapes(baseline) != names_and_shapes(variant):
        raise GraphError(f"{variant.source} has different inputs/outputs (names or shapes) than {baseline.source}")


def open_pair(
    folder: str | Path,
    variant: str | None = None,
    baseline: str = FP32,
    threads: int = 1,
    providers: ProviderArg = None,
) -> GraphPair:
    """The `baseline` and `variant` step graphs of an export folder, checked to come from one model.

    `providers` runs the variant there (e.g. 'cpu-arm64', emulated); the baseline runs on this CPU:
    fp32 differs between CPUs by ~1e-5 logits, the precision change by 100x more, so the drift
    measured is the variant's on its target.
    `variant=None` picks the only step variant besides fp32 (and `baseline`); several or none is an error
    that lists what the folder holds.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GraphError(f"{folder} is not a folder (expected an exported model folder)")
    settle(folder)  # a commit a killed writer left: its new version is the one compared
    base_path = _graph_path(folder, check_variant_name(baseline), "baseline")
    chosen = choose_variant(folder, variant, baseline)
    if chosen == baseline:
        raise GraphError(f"variant and baseline are both {baseline!r}; drift compares two different variants")
    variant_path = _graph_path(folder, chosen, "variant")
    pair = GraphPair(folder, _open(base_path, baseline, threads), _open(variant_path, chosen, threads, providers))
    check_same_model(pair.baseline, pair.variant)
    check_same_weights(folder, base_path, variant_path)
    return pair


def _weights_of(folder: Path, path: Path, manifest: dict[str, Any]) -> str | None:
    """The weights_sha256 of the fp32 step graph `path` was made from: its own for the fp32 graph, the
    one quantize recorded in the variant's manifest entry otherwise (None: an older export, unknown)."""
    split = split_graph_file(path.name)
    if split is None:
        return None
    if split[1] == FP32:  # the file's own hash; without onnx (a torch/onnx-free install) the export's record
        recorded = file_weights_sha256(path) or manifest.get(WEIGHTS_KEY)
        return recorded if isinstance(recorded, str) else None
    entry = manifest.get("variants", {}).get(split[1]) if isinstance(manifest.get("variants"), dict) else None
    value = entry.get(WEIGHTS_KEY) if isinstance(entry, dict) else None
    return value if isinstance(value, str) else None


def check_same_weights(folder: Path, baseline: Path, variant: Path) -> None:
    """GraphError when the two graphs were made from different weights (rnnedge/graphweights.py): same
    shapes, another model. Exports and variants written before the hash existed are not compared."""
    try:
        manifest = read_json(folder / MANIFEST, "manifest") if (folder / MANIFEST).is_file() else {}
    except RnnedgeError:
        manifest = {}
    if not isinstance(manifest, dict):
        manifest = {}
    a, b = _weights_of(folder, baseline, manifest), _weights_of(folder, variant, manifest)
    if a is not None and b is not None and a != b:
        raise GraphError(
            f"{variant} was made from other weights than {baseline} (weights sha256 {b[:12]}… vs {a[:12]}…): "
            f"they are two different models; re-run `rnnedge quantize {folder}`"
        )
