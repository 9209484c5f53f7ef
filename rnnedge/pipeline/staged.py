"""The pipeline's result as one unit: every stage writes into a staging folder inside OUT, and the whole
result (checkpoint/, export/, report/, data/, sample.txt, summary.json) is committed at the end by
rnnedge/commit.py (one rename, then a roll-forward a reader or the next run finishes). A kill anywhere
leaves the whole old result or the whole new one.

Files the new result no longer has are removed only when a ledger proves rnnedge wrote them: OUT's own
(summary.json, sample.txt, data/...) or the ledger of the sub-folder they are in (export/, report/,
checkpoint/). The staged reports name the staging folder in their paths; those paths are rewritten to
OUT before the commit (and the sub-folders' ledgers recomputed), so the committed files name OUT.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from rnnedge import ownership
from rnnedge.commit import commit_staged, make_staging

SUBFOLDERS = ("checkpoint", "export", "report")  # each has a ledger of its own
REWRITTEN = ("summary.json", "export/manifest.json", "report/report.json", "report/report.md", "report/report.html")
LAST = "summary.json"


def staging_folder(out: Path) -> Path:
    """A new staging folder for the run's stages inside `out` (removed by the next run if a kill leaves it)."""
    out.mkdir(parents=True, exist_ok=True)
    return make_staging(out)


def _files(root: Path) -> list[str]:
    """Relative paths of every regular file under `root` (symlinks are not followed or listed)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not os.path.islink(base / d)]
        for name in filenames:
            if stat.S_ISREG(os.lstat(base / name).st_mode):
                found.append((base / name).relative_to(root).as_posix())
    return sorted(found, key=lambda rel: (rel == LAST, rel))


def _rewrite_paths(staging: Path) -> None:
    """Make the staged reports name OUT instead of the staging folder, and re-ledger the sub-folders."""
    marker = ("/" + staging.name).encode("utf-8")
    for rel in REWRITTEN:
        path = staging / rel
        if ownership.regular(staging, rel) is not None:
            data = path.read_bytes()
            if marker in data:
                path.write_bytes(data.replace(marker, b""))
    for sub in SUBFOLDERS:
        ledger = ownership.read_ledger(staging / sub) if (staging / sub).is_dir() else None
        if ledger is not None:
            entries = {rel: ownership.file_digest(staging / sub, rel) for rel in ledger.files}
            ownership.write_ledger(staging / sub, {rel: (e,) for rel, e in entries.items() if e is not None})


def _sub_ledger(out: Path, sub: str) -> ownership.Ledger:
    found = ownership.read_ledger(out / sub) if ownership.regular(out, f"{sub}/{ownership.LEDGER}") else None
    return found or ownership.Ledger(out / sub, {})


def _stale(out: Path, top: ownership.Ledger, new: set[str]) -> list[str]:
    """The old result's files (relative to `out`) the new one lacks, that a ledger proves are rnnedge's.
    A sub-folder the new result does not have (checkpoint/ when this run did not train) is left alone."""
    stale = [rel for rel in ownership.owned_names(top) if rel not in new]
    for sub in SUBFOLDERS:
        ledger = _sub_ledger(out, sub)
        if ledger.files and any(rel.startswith(sub + "/") for rel in new):
            names = [*ownership.owned_names(ledger), ownership.LEDGER]
            stale += [f"{sub}/{rel}" for rel in names if f"{sub}/{rel}" not in new and (out / sub / rel).is_file()]
    return stale


def commit_result(out: Path, staging: Path, top: ownership.Ledger, overwrite: bool) -> None:
    """Commit the staged result into `out` as one unit (module doc); RnnedgeError (one line) when a file
    it would replace is not rnnedge's (unless `overwrite`), and then `out` is as it was."""
    _rewrite_paths(staging)
    rels = _files(staging)
    for sub in SUBFOLDERS:  # every file replaced must be provably ours, by the ledger of its own folder
        names = [rel.split("/", 1)[1] for rel in rels if rel.startswith(sub + "/")]
        names = [n for n in names if n != ownership.LEDGER]  # the folder's record itself, rewritten whole
        if names and (out / sub).is_dir():
            ownership.check_replaceable(_sub_ledger(out, sub), names, overwrite=overwrite, what=f"--out {sub}/")
    top_names = [rel for rel in rels if rel.split("/", 1)[0] not in SUBFOLDERS]
    ownership.check_replaceable(top, top_names, overwrite=overwrite)
    stale = _stale(out, top, set(rels))
    new = {rel: ownership.file_digest(staging, rel) for rel in top_names}
    ledger = ownership.final(top, {k: v for k, v in new.items() if v is not None}, stale)
    commit_staged(out, staging, rels, stale, ownership.ledger_bytes(ledger))
