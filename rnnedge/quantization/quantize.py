"""`quantize_export`: a precision variant of an export folder's graphs, checked before anything is written.

    validate the recipe and options -> load the fp32 graphs -> read the texts (calibration and held-out
    never overlap) -> build each graph's variant with the recipe's handler -> check and measure it
    -> write the graphs (and .ort files), then the manifest.

The variant is named after the recipe: `step.int8-dynamic.onnx`, `parallel.fp16.onnx`, ... (graphmeta).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from rnnedge.errors import ConfigError, GraphError, RnnedgeError
from rnnedge.graphmeta import graph_file
from rnnedge.graphweights import file_weights_sha256, weights_sha256
from rnnedge.inference import GraphSession
from rnnedge.quantization import loss
from rnnedge.quantization.builder import VariantBuilder
from rnnedge.quantization.calibrate import calibration_feeds
from rnnedge.quantization.graph_edits import graph_info, load_proto, match_patterns, name_nodes, refuse_quantized
from rnnedge.quantization.methods import builder_for
from rnnedge.quantization.on_targets import check_targets, verified_on, verify_on
from rnnedge.quantization.recipes import Recipe, with_options
from rnnedge.quantization.recipes import recipe as preset
from rnnedge.quantization.texts import TextPath, Texts, read_texts
from rnnedge.quantization.variant_files import ort_outputs, read_manifest, write_variant
from rnnedge.quantization.variant_graph import BuiltGraph, build_graph
from rnnedge.threads import resolve_threads
from rnnedge.vocab import OnUnknown

Log = Callable[[str], None]


@dataclass(frozen=True)
class QuantizeResult:
    """What `quantize_export` wrote: the variant's name and recipe, its files, and its manifest entry."""

    variant: str
    recipe: Recipe
    paths: dict[str, Path]  # graph kind -> variant .onnx
    graphs: dict[str, dict[str, Any]]  # graph kind -> its report (manifest["variants"][name]["graphs"])
    manifest: dict[str, Any]  # manifest["variants"][name]
    extra_files: tuple[Path, ...] = ()  # .ort files and required_operators.config, when written


@dataclass(frozen=True)
class Fp32Graph:
    """An fp32 graph of the export folder: file, named-node proto, and an ORT session of it."""

    path: Path
    proto: onnx.ModelProto
    session: GraphSession


def resolve_recipe(recipe: Recipe | str, options: dict[str, Any]) -> Recipe:
    """A preset name (or alias) or a Recipe, with `options` replacing its fields (validated by the recipe)."""
    if isinstance(recipe, str):
        return preset(recipe, **options)
    if isinstance(recipe, Recipe):
        return with_options(recipe, **options)
    raise ConfigError(f"recipe must be a preset name or a Recipe, not {type(recipe).__name__}")


def _unknown_policy(on_unknown: str) -> OnUnknown:
    if on_unknown == "error":
        return "error"
    if on_unknown == "skip":
        return "skip"
    raise RnnedgeError(f"--on-unknown must be error or skip, not {on_unknown!r}")


def load_fp32_graphs(folder: Path, kinds: tuple[str, ...]) -> dict[str, Fp32Graph]:
    """The fp32 graphs `kinds` of an export folder; GraphError if missing, already quantized or mismatched."""
    if not folder.is_dir():
        raise GraphError(f"export folder not found: {folder}")
    missing = [graph_file(k) for k in kinds if not (folder / graph_file(k)).is_file()]
    if missing:
        raise GraphError(f"{folder} has no {', '.join(missing)} (run `rnnedge export` first)")
    loaded = {}
    for kind in kinds:
        path = folder / graph_file(kind)
        proto = load_proto(path)
        info = graph_info(proto, str(path))
        refuse_quantized(proto, info, str(path))
        name_nodes(proto)
        loaded[kind] = Fp32Graph(path, proto, loss.open_checked(path, kind))
    infos = [g.session.info for g in loaded.values()]
    if any(not i.same_model(infos[0]) for i in infos):
        raise GraphError(f"{folder}: step.onnx and parallel.onnx come from different models")
    return loaded


def target_folder(root: Path, recipe: Recipe) -> Path:
    """Where a target recipe's graphs live: `root/<target folder>` (e.g. qnn-htp/) when `root` is an
    export made with `--target <target>`, else `root` itself (already that folder, or a plain export)."""
    target = getattr(recipe, "target", None)
    if not target:
        return root
    from rnnedge.targets import target_spec

    sub = root / target_spec(target).folder
    if (sub / graph_file("step")).is_file():
        return sub
    if (root / graph_file("step")).is_file() and not (root.name == target_spec(target).folder):
        raise GraphError(
            f"{root} has no {sub.name}/ folder: export with `rnnedge export CKPT --out DIR --target {target}`"
        )
    return root


def make_builders(
    recipe: Recipe, graphs: dict[str, Fp32Graph], texts: Texts, workdir: Path, say: Log
) -> dict[str, VariantBuilder]:
    """One handler per graph; a calibrating recipe's feeds are recorded from the fp32 graph first."""
    builders = {}
    for kind, g in graphs.items():
        feeds = None
        if recipe.needs_calibration and texts.calib_ids is not None:
            say(f"calibrating the {kind} graph ({getattr(recipe, 'calib_method', 'minmax')}) on {texts.calib_source}")
            feeds = calibration_feeds(recipe, g.session, texts.calib_ids)
        builders[kind] = builder_for(recipe, g.proto, g.session.info, workdir, feeds)
    return builders


def keep_float_nodes(recipe: Recipe, builders: dict[str, VariantBuilder]) -> dict[str, list[str]]:
    """{kind: node names} the recipe's keep_float patterns match (on the parameter path, the same in
    both graphs, or a node name); RnnedgeError for a pattern matching none."""
    hits = {kind: match_patterns(recipe.keep_float, b.candidates, b.labels, b.params) for kind, b in builders.items()}
    kept = {kind: sorted({n for names in h.values() for n in names}) for kind, h in hits.items()}
    for pattern in recipe.keep_float:
        if not any(h[pattern] for h in hits.values()):
            paths = sorted({b.params.get(c, c) for b in builders.values() for c in b.candidates})
            more = "..." if len(paths) > 16 else ""
            raise RnnedgeError(
                f"--keep-float {pattern} matches no node {recipe.name} converts; "
                f"parameters it converts: {', '.join(paths[:16])}{more}"
            )
    return kept


def quantize_export(
    folder: str | os.PathLike[str],
    recipe: Recipe | str = "int8-dynamic",
    *,
    calib_text: TextPath | None = None,
    eval_text: TextPath | None = None,
    max_loss_delta: float | None = None,
    sensitivity: bool = False,
    on_unknown: str = "error",
    verify_on_targets: tuple[str, ...] = (),
    log: Log | None = None,
    threads: int = 1,
    **recipe_options: Any,
) -> QuantizeResult:
    """Write `<graph>.<recipe name>.onnx` beside the fp32 graphs for each graph in `recipe.graphs`.

    `recipe`: a preset name (int8-dynamic, int8-qdq, fp16, int8-weight, int4-weight; aliases dynamic,
    static) or a Recipe; `recipe_options` replace its fields (e.g. per_channel=True, calib_steps=256).
    Text: `eval_text` is held out for the loss check; a calibrating recipe calibrates on `calib_text`.
    Given only one text, a calibrating recipe splits it (first 90% calibrates, last 10% measures).
    Every variant must load, keep the fp32 I/O signature, give finite outputs and keep state outputs
    float (unless the recipe quantizes the state); with `max_loss_delta` the most sensitive nodes are
    kept float until the held-out delta holds. `verify_on_targets` (e.g. ("cpu-arm64", "cpu-x86-avx2"))
    also runs the step variant on those CPUs (on_targets.py): each delta is recorded, and checked against
    `max_loss_delta` when given. Nothing is written unless every graph passes.
    `threads`: ONNX Runtime intra-op threads of every session measuring a graph.
    """
    with loss.threads(resolve_threads(threads)):
        return _quantize_export(folder, recipe, calib_text, eval_text, max_loss_delta, sensitivity, on_unknown, log,
                                recipe_options, tuple(verify_on_targets))  # fmt: skip


def _quantize_export(
    folder: str | os.PathLike[str],
    recipe: Recipe | str,
    calib_text: TextPath | None,
    eval_text: TextPath | None,
    max_loss_delta: float | None,
    sensitivity: bool,
    on_unknown: str,
    log: Log | None,
    recipe_options: dict[str, Any],
    verify_on_targets: tuple[str, ...] = (),
) -> QuantizeResult:
    chosen = resolve_recipe(recipe, recipe_options)
    targets = check_targets(tuple(verify_on_targets))
    if max_loss_delta is not None and not max_loss_delta >= 0:
        raise RnnedgeError(f"--max-loss-delta must be >= 0, got {max_loss_delta}")
    policy = _unknown_policy(on_unknown)
    say = log or (lambda _m: None)
    root = target_folder(Path(folder), chosen)
    manifest = read_manifest(root) if root.is_dir() else {}  # untrusted: refused before any graph is loaded
    graphs = load_fp32_graphs(root, chosen.graphs)
    step_file = root / graph_file("step")
    weights = weights_sha256(graphs["step"].proto) if "step" in graphs else file_weights_sha256(step_file)
    vocab = next(iter(graphs.values())).session.info.vocab
    texts = read_texts(chosen, vocab, calib_text, eval_text, policy)
    say(f"{chosen.name}: held-out text: {texts.eval_source}")
    built: dict[str, BuiltGraph] = {}
    with tempfile.TemporaryDirectory(prefix="rnnedge-quant-") as tmp:
        builders = make_builders(chosen, graphs, texts, Path(tmp), say)
        keep = keep_float_nodes(chosen, builders)
        for kind, builder in builders.items():
            built[kind] = build_graph(
                builder,
                graphs[kind].session,
                graphs[kind].path,
                texts,
                keep[kind],
                max_loss_delta=max_loss_delta,
                sensitivity=sensitivity,
                say=say,
            )
    on_targets: dict[str, dict[str, Any]] = {}
    if "step" in built and targets:
        for name in targets:
            on_targets[name] = verify_on(
                name, built["step"].data, graphs["step"].session, texts.eval_ids, max_loss_delta, say
            )
        built["step"].report["targets"] = on_targets
    for b in built.values():
        b.report["verified_on"] = verified_on(on_targets if b.kind == "step" else {})
    written: dict[str, bytes] = {}
    if getattr(chosen, "target", None) == "qnn-htp":  # run on the HTP simulator before anything is written
        from rnnedge.quantization.on_htp import context_file, verify_on_htp

        htp, ctx = verify_on_htp(
            chosen, built["step"].data, graphs["step"].session, texts.eval_ids, max_loss_delta, say
        )
        if ctx is not None:
            written[context_file(chosen.name)] = ctx
            htp["context_binary"]["file"] = context_file(chosen.name)
        built["step"].report["htp"] = htp
        built["step"].report["verified_on"].append(htp["target"])
    ort = ort_outputs(root, built)
    paths, entry = write_variant(root, chosen, built, ort, manifest, written, weights)
    extra = tuple(root / name for name in sorted(ort[0])) if ort else ()
    extra += tuple(root / name for name in sorted(written))
    return QuantizeResult(chosen.name, chosen, paths, {k: b.report for k, b in built.items()}, entry, extra)
