"""The report folder: rnnedge replaces or removes only files its ledger proves it wrote there.

The folder's ledger (rnnedge/ownership.py: names, sizes, sha256) decides what is rnnedge's; the report's
own manifest (`report.json`, `compare.json`: a `ReportKind`) lists its files, but that list is user input
and never decides a deletion. Writing a new report:

1. check the target before any long run: a new folder, an empty one, or one with rnnedge's ledger; any
   other non-empty folder (an older rnnedge's report without a ledger included) is refused unless
   `overwrite`. A report file name taken by a file the ledger does not vouch for is refused unless
   `overwrite`; one taken by a symlink, folder or device, or under a symlinked folder, always is;
2. write every file, and the ledger, into a temp folder beside the target (a full disk or Ctrl-C here
   leaves the target exactly as it was and removes the temp folder);
3. under the writer lock (rnnedge/outlock.py; stale temp folders of killed runs are removed first):
   a new target: rename the temp folder into place (atomic). An existing one: re-check the folder and
   commit as one unit (rnnedge/commit.py): the new files and ledger, and the removal of the earlier
   report's files the new one no longer has (only those whose bytes still match the ledger), are staged
   with a record, made current by one rename and rolled forward, so a kill anywhere leaves the whole
   old report or the whole new one. Nothing else is touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rnnedge import ownership
from rnnedge.commit import commit_tree, roll_forward
from rnnedge.errors import RnnedgeError
from rnnedge.outlock import remove_stale_temps, writer_lock

REPORT_JSON = "report.json"
SCHEMA_PREFIX = "rnnedge-drift-report/"
MAX_REPORT_JSON_BYTES = 64 << 20  # an earlier report.json larger than this is not read


def schema1_files(n_models: int) -> frozenset[str]:
    """The fixed file layout of reports with schema rnnedge-drift-report/1 (they list no files)."""
    fixed = ("report.json", "report.md", "report.html", "drift.png", "plots/logits.png", "plots/accumulation.png")
    return frozenset(fixed) | {f"plots/layers_{i}.png" for i in range(n_models)}


@dataclass(frozen=True)
class ReportKind:
    """Which rnnedge report a folder holds: its manifest file, its schema (the version that lists its
    files), the command that writes it (for messages), and the file layout of older unlisted schemas."""

    manifest: str
    schema: str  # e.g. "rnnedge-drift-report/2"
    command: str  # e.g. "rnnedge drift"
    legacy_files: dict[str, Callable[[int], frozenset[str]]] = field(default_factory=dict)  # schema -> layout

    @property
    def schema_prefix(self) -> str:
        return self.schema.rsplit("/", 1)[0] + "/"


DRIFT = ReportKind(REPORT_JSON, SCHEMA_PREFIX + "2", "rnnedge drift", {SCHEMA_PREFIX + "1": schema1_files})


@dataclass(frozen=True)
class ReportFolder:
    """Where a report goes and which files in it an earlier rnnedge report wrote (relative paths)."""

    path: Path
    ours: frozenset[str]
    kind: ReportKind = DRIFT
    overwrite: bool = False


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_target(
    out: str | os.PathLike[str], files: Iterable[str], kind: ReportKind = DRIFT, *, overwrite: bool = False
) -> ReportFolder:
    """RnnedgeError (one line) unless a report with `files` can be written to `out` without losing anything.

    Run it before the long work (module doc, step 1); the location must be writable.
    """
    out = Path(out)
    ledger = ownership.check_folder(out, overwrite=overwrite)
    names = list(files)
    ownership.check_replaceable(ledger, names, overwrite=overwrite)
    try:
        for base in {_nearest_existing(out.parent), *([out] if out.is_dir() else [])}:
            if not base.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(base))
            Path(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=base)).rmdir()
    except OSError as exc:
        raise RnnedgeError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return ReportFolder(out, frozenset(ownership.owned_names(ledger)), kind, overwrite)


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p `folder`; the folders it created, deepest first."""
    created: list[Path] = []
    path = folder
    while not path.exists():
        created.append(path)
        path = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _temp_folder(parent: Path, name: str) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a report is meant to be shared
    return tmp


def _commit_into(target: ReportFolder, tmp: Path, files: Mapping[str, bytes | Path]) -> None:
    out = target.path
    roll_forward(out)  # a commit a killed run left is finished first
    ledger = ownership.check_folder(out, overwrite=target.overwrite)  # again: the folder may have changed
    ownership.check_replaceable(ledger, files, overwrite=target.overwrite)
    new = {rel: _entry(tmp / rel) for rel in files}
    stale = ownership.removable(ledger, sorted(set(ledger.files) - set(files) - {ownership.LEDGER}))
    ledger_bytes = ownership.ledger_bytes(ownership.final(ledger, new, stale))
    order = sorted(files, key=lambda f: f == target.kind.manifest)  # the report's manifest last
    commit_tree(out, {rel: tmp / rel for rel in order}, stale, ledger_bytes)  # one unit (rnnedge/commit.py)
    shutil.rmtree(tmp)
    emptied = {p for rel in stale for p in (out / rel).parents if out in p.parents}  # e.g. plots/, exports/a/
    for folder in sorted(emptied, key=lambda p: -len(p.parts)):  # deepest first, once nothing is left in it
        with contextlib.suppress(OSError):
            folder.rmdir()


def _entry(path: Path) -> ownership.Entry:
    digest = ownership.file_digest(path.parent, path.name)
    if digest is None:
        raise RnnedgeError(f"{path} vanished while the report was written")
    return digest


def write_files(target: ReportFolder, files: Mapping[str, bytes | Path]) -> None:
    """Write `files` into the checked target (see module doc): {relative path: bytes, or a file to move
    there (on the same filesystem, e.g. staged beside the target)}, the report's manifest included."""
    out = target.path
    staged = [d for d in files.values() if isinstance(d, Path)]
    created: list[Path] = []
    tmp: Path | None = None
    try:
        created = _make_parents(out.parent)
        tmp = _temp_folder(out.parent, out.name)
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Path):
                os.replace(data, tmp / rel)
            else:
                (tmp / rel).write_bytes(data)
        with writer_lock(out):
            remove_stale_temps(out, [*files, ownership.LEDGER], keep=[tmp, *staged])
            if not os.path.lexists(out):
                ownership.write_ledger(tmp, {rel: (_entry(tmp / rel),) for rel in files})
                os.rename(tmp, out)
            else:
                _commit_into(target, tmp, files)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):
            raise RnnedgeError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
        raise
