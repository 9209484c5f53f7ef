"""Writing a variant into its export folder: graph files, .ort files when the folder has them, manifest last.

Every file goes through a temp name and a rename (rnnedge.io), and only after every graph passed. In
a folder made by `rnnedge export --ort-format` the variant also gets `<graph>.<variant>.ort`, and
required_operators.config is rewritten to cover every .ort graph there (fp32 and all variants).
The manifest gets `variants[<name>] = {"recipe": ..., "graphs": {kind: report}, "ort_format": ...}`;
a graph not rebuilt this time keeps its entry (with its own recipe, when that differed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnedge.errors import RnnedgeError
from rnnedge.graphmeta import MANIFEST, split_graph_file
from rnnedge.io import read_json, write_bytes, write_json
from rnnedge.ortformat import CONFIG_NAME, convert_to_ort
from rnnedge.quantization.recipes import Recipe
from rnnedge.quantization.variant_graph import BuiltGraph

ORT_MARKERS = ("parallel.ort", "step.ort", CONFIG_NAME)  # what `rnnedge export --ort-format` leaves


def ort_outputs(folder: Path, built: dict[str, BuiltGraph]) -> tuple[dict[str, bytes], dict[str, Any]] | None:
    """The variant's .ort files and the widened required_operators.config, if the folder uses .ort files."""
    if not any((folder / m).is_file() for m in ORT_MARKERS):
        return None
    stems = {b.file.removesuffix(".onnx"): b.data for b in built.values()}
    others = sorted(p for p in folder.glob("*.ort") if p.is_file() and p.stem not in stems)
    return convert_to_ort(stems, also=others)


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    manifest = read_json(path, "manifest") if path.is_file() else {}
    if not isinstance(manifest, dict):
        raise RnnedgeError(f"{path} is not a JSON object")
    if not isinstance(manifest.get("variants", {}), dict):
        raise RnnedgeError(f"{path}: 'variants' is not a JSON object")
    return manifest


def _variant_entry(
    folder: Path, old: Any, recipe: Recipe, built: dict[str, BuiltGraph], ort: dict[str, Any] | None
) -> dict[str, Any]:
    mine = recipe.to_dict()
    graphs: dict[str, Any] = {}
    if isinstance(old, dict) and isinstance(old.get("graphs"), dict):
        for kind, kept in old["graphs"].items():  # graphs not rebuilt now keep their entry, if their file is there
            name = str(kept.get("file", "")) if isinstance(kept, dict) else ""
            if kind in built or split_graph_file(name) is None or not (folder / name).is_file():
                continue
            made_by = kept.get("recipe", old.get("recipe"))
            graphs[kind] = kept if made_by == mine else {**kept, "recipe": made_by}
    graphs.update({kind: b.report for kind, b in built.items()})
    entry: dict[str, Any] = {"recipe": mine, "graphs": dict(sorted(graphs.items()))}
    if ort is not None:
        entry["ort_format"] = ort
    elif isinstance(old, dict) and "ort_format" in old:
        entry["ort_format"] = old["ort_format"]
    return entry


def write_variant(
    folder: Path,
    recipe: Recipe,
    built: dict[str, BuiltGraph],
    ort: tuple[dict[str, bytes], dict[str, Any]] | None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write the checked graphs (and .ort files), then the manifest; returns ({kind: path}, variant entry)."""
    manifest = _manifest(folder)  # read (and refused if damaged) before anything is written
    paths = {}
    for kind, b in built.items():
        paths[kind] = folder / b.file
        write_bytes(paths[kind], b.data)
    if ort is not None:
        for name, blob in ort[0].items():
            write_bytes(folder / name, blob)
    variants = manifest.setdefault("variants", {})
    entry = _variant_entry(folder, variants.get(recipe.name), recipe, built, ort[1] if ort else None)
    variants[recipe.name] = entry
    write_json(folder / MANIFEST, manifest)
    return paths, entry
