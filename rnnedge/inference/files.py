"""Finding a graph file: an export folder plus (kind, variant) -> the file, or one line naming what is there;
and whether a graph still has the bytes rnnedge wrote (`changed_since_export`)."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from rnnedge import ownership
from rnnedge.commit import settle
from rnnedge.errors import ExportChanged, GraphError, RnnedgeError
from rnnedge.graphmeta import FP32, MANIFEST, graph_file, list_variants

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: hashed once per version


def graph_path(path: str | os.PathLike[str], kind: str, variant: str = FP32) -> Path:
    """An export folder -> its `kind` graph of `variant` (`step.onnx`, `step.int8-dynamic.onnx`, ...).

    A file path is returned as is. GraphError if the folder lacks that graph; the message lists the
    variants of `kind` the folder does hold.
    """
    p = Path(path)
    if p.is_dir():
        settle(p)  # a commit a killed writer left (rnnedge/commit.py): the new version is the one read
        name = graph_file(kind, variant)  # GraphError for a malformed variant name
        target = p / name
        if target.is_file():
            return target
        present = [v for v, kinds in list_variants(p).items() if kind in kinds]
        if not present:
            raise GraphError(f"{p} has no {name} and no other {kind} graph (is it an `rnnedge export` folder?)")
        hint = "; `rnnedge quantize` makes precision variants" if variant != FP32 else ""
        raise GraphError(f"{p} has no {name}; its {kind} variants: {', '.join(present)}{hint}")
    if not p.exists():
        raise GraphError(f"graph not found: {p}")
    return p


def _recorded(path: Path) -> tuple[Path, list[str]] | None:
    """(the record, the sha256s it accepts for `path`): the ledger of its folder or of the export folder
    above it (mobile/step.onnx), else the export manifest's graph entry (a folder of an older rnnedge)."""
    for root, rel in ((path.parent, path.name), (path.parent.parent, f"{path.parent.name}/{path.name}")):
        try:
            ledger = ownership.read_ledger(root)
        except RnnedgeError:  # a damaged ledger: its own commands refuse it; this is only a check
            ledger = None
        if ledger is not None and ledger.files.get(rel):
            return root / ownership.LEDGER, [e.sha256 for e in ledger.files[rel]]
    try:
        manifest = json.loads((path.parent / MANIFEST).read_text(encoding="utf-8"))
        entry = next(g for g in manifest["graphs"].values() if isinstance(g, dict) and g.get("file") == path.name)
        return path.parent / MANIFEST, [str(entry["sha256"])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration, RecursionError):
        return None


def changed_since_export(path: str | os.PathLike[str]) -> str | None:
    """One line when `path` is a graph rnnedge wrote into an export folder whose bytes no longer match the
    sha256 recorded there (the folder's ledger, or manifest.json), else None."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return None
    record = _recorded(p)
    if record is None:
        return None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    if _DIGESTS[key] in record[1]:
        return None
    return (
        f"{p} changed since rnnedge wrote it (its sha256 is not the one in {record[0].name}): a tool rewrote "
        "it in place? (onnx2tf runs `onnxsim IN IN`: convert a copy); re-export to be sure"
    )


def warn_if_changed(path: str | os.PathLike[str]) -> str | None:
    """`changed_since_export(path)`, issued as an ExportChanged warning (the CLI prints it once per command,
    as one line)."""
    note = changed_since_export(path)
    if note is not None:
        warnings.warn(note, ExportChanged, stacklevel=3)
    return note
