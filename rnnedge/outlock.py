"""One writer per output folder, and the temp files of earlier killed runs (torch-free).

`writer_lock(out)` takes an exclusive, non-blocking flock on `.<name>.rnnedge-lock` beside `out` (in its
parent folder, which is created if missing and removed again if it was created and is left empty): a
second rnnedge writing the same `--out` is refused in one line while the first runs. The lock file is
removed on release; one left by a SIGKILLed run is simply locked again. Nested locks of one folder in one
process are shared. While the lock is held no other rnnedge writes that folder, so the temp files an
earlier killed run left there are stale: `remove_stale_temps` deletes those rnnedge's writers name
(`.<file>.XXXXXXXX.tmp` of atomic_path for the files the command writes, `.<out>.tmp-XXXXXXXX` /
`.work-` / `.probe-` folders of the report writers beside `out`, the staging folders of rnnedge/commit.py,
the `.rnnedge-probe.XXXXXXXX` files of a writability probe).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from rnnedge.errors import RnnedgeError, WriteError

_HELD: dict[str, int] = {}
_RAND = r"[A-Za-z0-9_]{8}"


def lock_path(out: Path) -> Path:
    """Where the lock of `out` lives: beside it, in its (absolute) parent folder."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.rnnedge-lock"


@contextlib.contextmanager
def writer_lock(out: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the writer lock of `out` for the block; RnnedgeError (one line) if another process holds it."""
    path = lock_path(Path(out))
    key = str(path)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    created = [p for p in path.parents if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _locked_fd(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise WriteError(f"cannot write to {path.parent}: {reason}", reason) from None
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _locked_fd(path: Path) -> int:
    """An fd of `path` holding its exclusive flock (the file re-checked to still be the one locked)."""
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                out = path.parent / path.name.removeprefix(".").removesuffix(".rnnedge-lock")
                raise RnnedgeError(
                    f"another rnnedge is writing {out} right now (lock {path}); wait for it or choose another --out"
                ) from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file between our open and flock: lock the new one
    raise OSError(errno.EBUSY, "lock file keeps changing", str(path))


def remove_stale_temps(out: str | os.PathLike[str], names: Iterable[str] = (), keep: Iterable[Path] = ()) -> list[Path]:
    """Delete the temp files and folders earlier killed runs of rnnedge left for `out` (call with the
    writer lock held): atomic_path temps of `names` inside `out`, the checkpoint's staging folder, and
    the report writers' temp folders beside `out` (not those in or holding `keep`: this run's own).
    Only plain files and real folders; returns them."""
    out = Path(os.path.abspath(out))
    patterns = [(out, re.compile(rf"\.{re.escape(n)}\.{_RAND}\.tmp")) for n in names]
    patterns.append((out, re.compile(rf"\.rnnedge-staging-{_RAND}")))
    patterns.append((out, re.compile(rf"\.rnnedge-probe\.{_RAND}")))  # check_writable's, killed before its unlink
    patterns.append((out.parent, re.compile(rf"\.{re.escape(out.name)}\.(tmp|work|probe)-{_RAND}")))
    kept = [os.path.abspath(k) for k in keep]
    removed: list[Path] = []
    for folder, pattern in patterns:
        try:
            listing = os.listdir(folder)
        except OSError:
            continue
        for name in listing:
            if not pattern.fullmatch(name):
                continue
            path = folder / name
            if any(k == str(path) or k.startswith(str(path) + os.sep) for k in kept):
                continue  # this run's own temp folder (or one holding its staged files)
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode):
                    os.unlink(path)
                elif stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(path)  # does not follow symlinks inside
                else:
                    continue
                removed.append(path)
    return removed
