"""The report folder: rnnedge replaces only the files it wrote there, never what a user added.

A report's manifest (`report.json` for drift, `compare.json` for `rnnedge compare`: a `ReportKind`)
lists every file the report wrote (`files`, relative to the folder; drift reports of schema /1 had a
fixed layout instead). Writing a new report:

1. check the target before any long run: a new folder, an empty one, or one holding an earlier
   rnnedge report of the same kind. A folder that is not empty and holds no such report is refused,
   and so is a new report file whose name is already taken by a file rnnedge did not write;
2. write every file into a temp folder beside the target (a full disk or Ctrl-C here leaves the
   target exactly as it was and removes the temp folder);
3. a new target: rename the temp folder into place (atomic). An existing one: delete the earlier
   report's files the new one no longer has, move the new manifest into place, then each other file,
   each by an atomic rename. Nothing else in the folder is touched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rnnedge.errors import RnnedgeError

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


def _safe_relative(name: object) -> str | None:
    """`name` if it is a plain relative path inside the folder (no '..', not absolute), else None."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts) or str(path) != name:
        return None
    return name


def earlier_report_files(out: Path, kind: ReportKind = DRIFT) -> frozenset[str] | None:
    """The files an earlier rnnedge report of `kind` in `out` wrote, or None if `out` holds no such report.

    RnnedgeError for a report rnnedge cannot read safely (newer schema, damaged file list).
    """
    path = out / kind.manifest
    try:
        if not path.is_file() or path.stat().st_size > MAX_REPORT_JSON_BYTES:
            return None
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    schema = report.get("schema") if isinstance(report, dict) else None
    if not isinstance(schema, str) or not schema.startswith(kind.schema_prefix):
        return None
    if schema in kind.legacy_files:
        models = report.get("models")
        return kind.legacy_files[schema](len(models) if isinstance(models, list) else 0)
    files = report.get("files")
    safe = [_safe_relative(f) for f in files] if isinstance(files, list) and schema == kind.schema else None
    if safe is None or None in safe:
        raise RnnedgeError(
            f"{out} holds a {kind.command} report ({schema}) whose file list this rnnedge cannot use; "
            "choose another --out"
        )
    return frozenset(f for f in safe if f is not None)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_target(out: str | os.PathLike[str], files: Iterable[str], kind: ReportKind = DRIFT) -> ReportFolder:
    """RnnedgeError (one line) unless a report with `files` can be written to `out` without losing anything.

    Run it before the long work. `out` must be new, empty, or hold an earlier rnnedge report of `kind`,
    and none of `files` may be taken by something rnnedge did not write; the location must be writable.
    """
    out = Path(out)
    ours: frozenset[str] = frozenset()
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise RnnedgeError(f"--out {out} exists and is not a folder; choose another --out")
        if any(out.iterdir()):
            earlier = earlier_report_files(out, kind)
            if earlier is None:
                raise RnnedgeError(
                    f"--out {out} is not empty and holds no {kind.command} report; choose another (or an empty) folder"
                )
            ours = earlier
    for name in files:
        path, rel = out / name, PurePosixPath(name)
        blocked = [out / p for p in reversed(rel.parents) if str(p) != "." and (out / p).exists()]
        if any(not p.is_dir() for p in blocked) or path.is_dir() or (path.exists() and name not in ours):
            raise RnnedgeError(f"{path} exists and was not written by {kind.command}; move it or choose another --out")
    try:
        for base in {_nearest_existing(out.parent), *([out] if out.is_dir() else [])}:
            if not base.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(base))
            Path(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=base)).rmdir()
    except OSError as exc:
        raise RnnedgeError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return ReportFolder(out, ours, kind)


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
    stale = sorted(target.ours - set(files))  # ours, and not part of the new report
    for rel in stale:
        path = out / rel
        if path.is_file() or path.is_symlink():
            path.unlink()
    for rel in sorted(files, key=lambda f: f != target.kind.manifest):  # the manifest first
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, out / rel)
    shutil.rmtree(tmp)
    emptied = {p for rel in stale for p in (out / rel).parents if out in p.parents}  # e.g. plots/, exports/a/
    for folder in sorted(emptied, key=lambda p: -len(p.parts)):  # deepest first, once nothing is left in it
        with contextlib.suppress(OSError):
            folder.rmdir()


def write_files(target: ReportFolder, files: Mapping[str, bytes | Path]) -> None:
    """Write `files` into the checked target (see module doc): {relative path: bytes, or a file to move
    there (on the same filesystem, e.g. staged beside the target)}, the report's manifest included."""
    out = target.path
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
        if not out.exists():
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
