"""A multi-file result committed as one unit (torch-free): all old or all new after a kill anywhere.

Every writer that puts more than one file in place (checkpoint, export, quantize, drift/compare report,
pipeline) calls `commit_tree(folder, files, remove, ledger)`:

1. every new file (fsync'd), the folder's new ledger and a record (`.rnnedge-record.json`: the files
   to move in, in order, and the files to remove with the size and sha256 they must still have) are
   written into a staging folder inside `folder` (`.rnnedge-staging-XXXXXXXX`);
2. the staging folder is renamed to `folder/.rnnedge-commit`: that one rename is the commit point;
3. `roll_forward` removes the old files the record lists (only while their bytes still match), moves
   each new file into place (the ledger last), then deletes the record and the commit folder.

A kill before step 2 leaves the old result (and a staging folder the next writer removes). A kill after
it leaves a commit folder with its record: the next writer rolls it forward before anything else (under
its lock), and readers do the same (`settle`, when no writer holds the folder) or take each file from
the commit folder (`member`). Files are never written through a symlink: a folder on the way that is a
symlink (or not a folder) makes roll_forward skip that file.

Why a record inside `--out` and not a sibling folder swapped in by rename: `--out` may also hold files
that are not part of this result (a user's, with --overwrite; quantize's variants beside an export),
and a non-empty folder cannot be replaced by one rename (rename(2) refuses ENOTEMPTY).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

COMMIT = ".rnnedge-commit"
RECORD = ".rnnedge-record.json"
STAGING_PREFIX = ".rnnedge-staging-"
LAST = "config.json"  # a checkpoint's commit of an older rnnedge (no record): config.json moved last
LEDGER = ".rnnedge-ledger.json"  # = ownership.LEDGER (kept here: ownership imports this module)
MAX_RECORD_BYTES = 16 << 20

Data = bytes | Path  # bytes to write, or a file (on the same filesystem) to move into the staging folder


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _record(commit: Path) -> dict[str, Any] | None:
    """The commit folder's record, or None (none, damaged, or a legacy checkpoint commit)."""
    if not _is_file(commit / RECORD):
        return None
    try:
        with open(commit / RECORD, "rb") as fh:
            obj = json.loads(fh.read(MAX_RECORD_BYTES).decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("put"), list) or not isinstance(obj.get("remove"), dict):
        return None
    return obj


def pending(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record of an unfinished commit in `folder` (None when there is none): readers that cannot
    settle it use it to see the new version (`member`, `removed`)."""
    commit = Path(folder) / COMMIT
    return _record(commit) if _is_dir(commit) else None


def member(folder: str | os.PathLike[str], name: str) -> Path:
    """Where the current version of `folder/name` is: in an unfinished commit, or in the folder."""
    folder = Path(folder)
    commit = folder / COMMIT
    if not _is_dir(commit):
        return folder / name
    record = _record(commit)
    if record is not None:
        return commit / name if name in record["put"] and _is_file(commit / name) else folder / name
    if (commit / LAST).is_file() and (commit / name).is_file():  # an older rnnedge's checkpoint commit
        return commit / name
    return folder / name


def _digest(path: Path) -> tuple[int, str] | None:
    from rnnedge.ownership import file_digest

    entry = file_digest(path.parent, path.name)
    return None if entry is None else (entry.size, entry.sha256)


def _safe_parent(folder: Path, rel: str) -> bool:
    """mkdir the folders on the way to folder/rel; False if one of them is a symlink or not a folder."""
    path = folder
    for part in PurePosixPath(rel).parts[:-1]:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path)
            continue
        if not stat.S_ISDIR(st.st_mode):
            return False
    return True


def roll_forward(folder: str | os.PathLike[str]) -> None:
    """Finish a commit a killed run left in `folder` (module doc, step 3); nothing when there is none.
    Call it with the folder's writer lock held."""
    folder = Path(folder)
    commit = folder / COMMIT
    if not _is_dir(commit):
        return
    record = _record(commit)
    if record is None and (commit / LAST).is_file():  # an older rnnedge's checkpoint commit: LAST last
        for name in sorted(os.listdir(commit), key=lambda n: n == LAST):
            if _is_file(commit / name):
                os.replace(commit / name, folder / name)
    elif record is not None:
        for rel, want in record["remove"].items():
            path = folder / rel
            if _safe_parent_exists(folder, rel) and _is_file(path) and list(_digest(path) or ()) == list(want):
                os.unlink(path)
        for rel in record["put"]:
            if _is_file(commit / rel) and _safe_parent(folder, rel):
                os.replace(commit / rel, folder / rel)
        os.unlink(commit / RECORD)
    shutil.rmtree(commit)  # what is left: files a symlinked folder kept out, an interrupted roll-forward's
    _fsync_dir(folder)


def _safe_parent_exists(folder: Path, rel: str) -> bool:
    path = folder
    for part in PurePosixPath(rel).parts[:-1]:
        path = path / part
        if not _is_dir(path):
            return False
    return True


def settle(folder: str | os.PathLike[str]) -> None:
    """For readers: roll forward a commit a killed writer left in `folder`, when no writer holds it
    (a live writer finishes its own). Nothing happens when the folder cannot be written."""
    folder = Path(folder)
    if not _is_dir(folder / COMMIT):
        return
    from rnnedge.errors import RnnedgeError
    from rnnedge.outlock import writer_lock

    with contextlib.suppress(RnnedgeError, OSError), writer_lock(folder):
        roll_forward(folder)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_tree(
    folder: str | os.PathLike[str],
    files: Mapping[str, Data],
    remove: Mapping[str, tuple[int, str]] | Iterable[str] = (),
    ledger: bytes | None = None,
) -> None:
    """Put `files` ({relative path: bytes or a file to move}) into `folder` and remove `remove` (names,
    or {name: (size, sha256) they must still have}) as one unit; `ledger` (the folder's new ledger
    bytes) is moved in last. The order of `files` is the order of the moves. OSError as raised (the
    caller words it); on a failure before the commit point `folder` is as it was."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    roll_forward(folder)
    staging = make_staging(folder)
    umask = os.umask(0)
    os.umask(umask)
    try:
        for rel, data in files.items():
            if rel == LEDGER:
                continue
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Path):
                os.replace(data, path)
            else:
                path.write_bytes(data)  # Path.write_bytes: the fault suite's full disk acts here
                os.chmod(path, 0o666 & ~umask)
                _fsync(path)
        commit_staged(folder, staging, [rel for rel in files if rel != LEDGER], remove, ledger)
    except BaseException:
        for rel, data in files.items():  # give back the files this call was handed to move
            if isinstance(data, Path) and _is_file(staging / rel):
                with contextlib.suppress(OSError):
                    os.replace(staging / rel, data)
        shutil.rmtree(staging, ignore_errors=True)
        raise


def make_staging(folder: Path) -> Path:
    """A new staging folder inside `folder` (`.rnnedge-staging-XXXXXXXX`, removed by the next writer's
    remove_stale_temps when a kill leaves it), with the mode a plain mkdir would give."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    return staging


def commit_staged(
    folder: Path,
    staging: Path,
    order: Iterable[str],
    remove: Mapping[str, tuple[int, str]] | Iterable[str] = (),
    ledger: bytes | None = None,
) -> None:
    """Commit a staging folder inside `folder` that holds the new files (relative paths `order`, in
    the order of the moves): the record and `ledger` are written into it, one rename makes it the
    commit, roll_forward finishes it. Before the rename nothing in `folder` has changed."""
    if not isinstance(remove, Mapping):
        remove = {rel: d for rel in remove if (d := _digest(folder / rel)) is not None}
    put = [rel for rel in order if rel != LEDGER]
    if ledger is not None:
        (staging / LEDGER).write_bytes(ledger)
        _fsync(staging / LEDGER)
        put.append(LEDGER)
    record = {"put": put, "remove": {rel: list(d) for rel, d in remove.items()}}
    (staging / RECORD).write_bytes(json.dumps(record).encode("utf-8"))
    _fsync(staging / RECORD)
    _fsync_dir(staging)
    os.rename(staging, folder / COMMIT)  # the commit point
    _fsync_dir(folder)
    roll_forward(folder)


def commit_files(folder: str | os.PathLike[str], files: Mapping[str, bytes]) -> None:
    """A checkpoint's files (plain names -> bytes) as one unit, config.json moved last (commit_tree)."""
    ordered = {name: files[name] for name in sorted(files, key=lambda n: n == LAST)}
    commit_tree(folder, ordered)


def commit_with_ledger(folder: str | os.PathLike[str], files: Mapping[str, bytes]) -> None:
    """commit_files, with the folder's ledger (rnnedge/ownership.py) committed in the same unit."""
    from rnnedge import ownership

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    roll_forward(folder)
    old = ownership.read_ledger(folder) or ownership.Ledger(folder, {})
    new = {name: ownership.entry_of(data) for name, data in files.items()}
    ordered = {name: files[name] for name in sorted(files, key=lambda n: n == LAST)}
    commit_tree(folder, ordered, ledger=ownership.ledger_bytes(ownership.final(old, new)))
