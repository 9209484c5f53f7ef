"""A checkpoint's files committed as one unit (torch-free): all old or all new after a kill anywhere.

`commit_files(folder, files)` writes every file (fsync'd) into a staging folder inside `folder`, then
renames it to `folder/.rnnedge-commit`: that one rename is the commit point. It then moves each file
into place, `config.json` last, and removes the commit folder. A kill before the commit rename leaves
the old checkpoint (and a staging folder the next run removes); a kill after it leaves a commit folder
that still holds `config.json`, and readers (`member`) take every file the commit folder still holds
from there, so they see exactly the new checkpoint; the next writer finishes the moves (`roll_forward`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

COMMIT = ".rnnedge-commit"
STAGING_PREFIX = ".rnnedge-staging-"
LAST = "config.json"  # the record that names (by sha256) the other files: moved into place last


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def member(folder: str | os.PathLike[str], name: str) -> Path:
    """Where the current version of `folder/name` is: in an unfinished commit, or in the folder."""
    folder = Path(folder)
    commit = folder / COMMIT
    if _is_dir(commit) and (commit / LAST).is_file() and (commit / name).is_file():
        return commit / name
    return folder / name


def roll_forward(folder: Path) -> None:
    """Finish a commit a killed run left: move its files into place (LAST last), remove the folder."""
    commit = folder / COMMIT
    if not _is_dir(commit):
        return
    if (commit / LAST).is_file():
        names = sorted(os.listdir(commit), key=lambda n: n == LAST)
        for name in names:
            if stat.S_ISREG(os.lstat(commit / name).st_mode):
                os.replace(commit / name, folder / name)
    for name in os.listdir(commit):  # what is left is a leftover of an interrupted roll-forward
        with contextlib.suppress(OSError):
            os.unlink(commit / name)
    os.rmdir(commit)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit_files(folder: str | os.PathLike[str], files: Mapping[str, bytes]) -> None:
    """Write `files` (plain names -> bytes, LAST among them) into `folder` as one unit (module doc).
    OSError as raised (the caller words it); on failure before the commit point nothing is changed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    roll_forward(folder)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    umask = os.umask(0)
    os.umask(umask)
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)  # Path.write_bytes: the fault suite's full disk acts here
            os.chmod(staging / name, 0o666 & ~umask)
            fd = os.open(staging / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(staging)
        os.rename(staging, folder / COMMIT)  # the commit point
    except BaseException:
        for name in files:
            with contextlib.suppress(OSError):
                os.unlink(staging / name)
        with contextlib.suppress(OSError):
            staging.rmdir()
        raise
    _fsync_dir(folder)
    roll_forward(folder)
    _fsync_dir(folder)


def commit_with_ledger(folder: str | os.PathLike[str], files: Mapping[str, bytes]) -> None:
    """commit_files, recorded in the folder's ledger: before the commit the ledger accepts both the old
    and the new version of each file, after it the new one (rnnedge/ownership.py)."""
    from rnnedge import ownership

    folder = Path(folder)
    ledger = ownership.read_ledger(folder) or ownership.Ledger(folder, {})
    new = {name: ownership.entry_of(data) for name, data in files.items()}
    with ownership.committing(ledger, new):
        commit_files(folder, files)
