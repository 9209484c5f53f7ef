"""Writing a variant into its export folder: graph files, .ort files when the folder has them, manifest last.

Every file is written only after every graph passed, and all of them (graphs, manifest, ledger) are
committed as one unit (rnnedge/commit.py): a full disk or a kill anywhere leaves the old variant and
manifest or the new ones. In
a folder made by `rnnedge export --ort-format` the variant also gets `<graph>.<variant>.ort`, and
required_operators.config is rewritten to cover every .ort graph there (fp32 and all variants).
The manifest gets `variants[<name>] = {"recipe": ..., "graphs": {kind: report}, "ort_format": ...}`;
a graph not rebuilt this time keeps its entry (with its own recipe, when that differed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rnnedge import ownership
from rnnedge.commit import commit_tree, roll_forward, settle
from rnnedge.errors import RnnedgeError, WriteError
from rnnedge.graphmeta import MANIFEST, split_graph_file
from rnnedge.graphweights import WEIGHTS_KEY
from rnnedge.io import json_text, read_json
from rnnedge.ortformat import CONFIG_NAME, convert_to_ort
from rnnedge.outlock import remove_stale_temps, writer_lock
from rnnedge.quantization.recipes import Recipe
from rnnedge.quantization.variant_graph import BuiltGraph

ORT_MARKERS = ("parallel.ort", "step.ort", CONFIG_NAME)  # what `rnnedge export --ort-format` leaves
FILE_KEYS = ("file", "files", "config_covers", "removed_stale")  # manifest keys whose values are file names


def ort_outputs(folder: Path, built: dict[str, BuiltGraph]) -> tuple[dict[str, bytes], dict[str, Any]] | None:
    """The variant's .ort files and the widened required_operators.config, if the folder uses .ort files."""
    if not any((folder / m).is_file() for m in ORT_MARKERS):
        return None
    stems = {b.file.removesuffix(".onnx"): b.data for b in built.values()}
    others = sorted(p for p in folder.glob("*.ort") if p.is_file() and p.stem not in stems)
    return convert_to_ort(stems, also=others)


def _named_files(obj: Any) -> Iterator[Any]:
    """Every value a manifest gives as a file of its folder (under FILE_KEYS, at any depth)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in FILE_KEYS:
                yield from value if isinstance(value, list) else [value]
            else:
                yield from _named_files(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _named_files(value)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The export folder's manifest.json ({} if there is none), refused in one line when damaged or when
    it names a file that is not a plain name inside the folder (`../x`, `/etc/x`, `sub/x`)."""
    settle(folder)  # a commit a killed run left: its new version is the one read
    path = folder / MANIFEST
    manifest = read_json(path, "manifest") if path.is_file() else {}
    if not isinstance(manifest, dict):
        raise RnnedgeError(f"{path} is not a JSON object")
    if not isinstance(manifest.get("variants", {}), dict):
        raise RnnedgeError(f"{path}: 'variants' is not a JSON object")
    for name in _named_files(manifest):
        if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0"):
            raise RnnedgeError(f"{path} names a file outside its folder ({str(name)[:100]!r}); refusing it")
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
    manifest: dict[str, Any],
    extra: dict[str, bytes] | None = None,
    weights: str | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write the checked graphs (and .ort files, and `extra` {file name: bytes}, e.g. a QNN context
    binary), then `manifest` (read_manifest's, before anything was loaded) with the variant's entry;
    returns ({kind: path}, variant entry). `weights`: the weights_sha256 of the fp32 step graph the
    variant was made from (rnnedge/graphweights.py), recorded in its entry. All of it is one unit
    (rnnedge/commit.py): after a kill anywhere the folder holds the old or the new variant and manifest."""
    paths = {kind: folder / b.file for kind, b in built.items()}
    blobs = {paths[kind]: b.data for kind, b in built.items()}
    blobs.update({folder / name: blob for name, blob in (extra or {}).items()})
    if ort is not None:
        blobs.update({folder / name: blob for name, blob in ort[0].items()})
    variants = manifest.setdefault("variants", {})
    entry = _variant_entry(folder, variants.get(recipe.name), recipe, built, ort[1] if ort else None)
    if weights is not None:
        entry[WEIGHTS_KEY] = weights
    variants[recipe.name] = entry
    with writer_lock(folder):
        roll_forward(folder)  # a commit a killed run left is finished first
        ledger = _check_ownership(folder, [p.relative_to(folder).as_posix() for p in blobs], manifest)
        manifest_bytes = json_text(manifest).encode("utf-8")
        rels = {p.relative_to(folder).as_posix(): b for p, b in blobs.items()}
        new = {rel: ownership.entry_of(b) for rel, b in rels.items()}
        new[MANIFEST] = ownership.entry_of(manifest_bytes)
        ledger_bytes = ownership.ledger_bytes(ownership.final(ledger, new))
        try:  # one unit (rnnedge/commit.py): the graphs, the manifest, the ledger
            commit_tree(folder, {**rels, MANIFEST: manifest_bytes}, (), ledger_bytes)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise WriteError(f"cannot write {folder}: {reason}", reason) from None
    return paths, entry


def _check_ownership(folder: Path, names: list[str], manifest: dict[str, Any]) -> ownership.Ledger:
    """The folder's ledger, after checking each file the variant replaces is rnnedge's (rnnedge/ownership.py).
    Legacy rule: an export an older rnnedge wrote (no ledger) may get its rnnedge-export manifest rewritten
    (its content is carried over), but a variant file already there is refused (nothing proves it ours)."""
    found = ownership.read_ledger(folder)
    ledger = found or ownership.Ledger(folder, {})
    legacy_manifest = found is None and manifest.get("format") == "rnnedge-export"
    replaced = names if legacy_manifest else [*names, MANIFEST]
    ownership.check_replaceable(ledger, replaced, overwrite=False, what="export folder", option=None)
    remove_stale_temps(folder, [*names, MANIFEST, ownership.LEDGER])
    return ledger
