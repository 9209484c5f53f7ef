"""Scratch space a SIGKILLed command does not leave behind.

A command's temporary files (rnnedge's own, and those of the libraries it calls: ONNX Runtime's
quantizers make `ort.quant.*` folders) go into one folder per process, `$TMPDIR/rnnedge-scratch-UID/<id>`,
which the process holds an exclusive flock on while it runs. A normal exit, an error or Ctrl-C removes
it (renamed `*.gone` first); a SIGKILL cannot, so every command first removes the folders whose lock no
live process holds (the lock dies with its holder, so a reused pid is never mistaken for the owner), and
any `*.gone` one.

The CLI enters the scratch for the whole command (`enter`/`leave`); library callers are left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

OWNER = ".owner"  # the lock file inside each process's folder
GONE = ".gone"  # the suffix of a folder being removed
UNLOCKED_GRACE_S = 600.0  # a folder without its lock file is someone's half-made one until this old

_held: tuple[Path, int, str | None, str | None] | None = None  # (folder, lock fd, old tempdir, old TMPDIR)


def _system_temp() -> Path:
    """tempfile's choice of temp dir, without `tempfile.gettempdir()`'s first-call probe (it writes a
    file there and removes it: a kill in between would leave it behind)."""
    if tempfile.tempdir is not None:
        return Path(tempfile.tempdir)
    for name in ("TMPDIR", "TEMP", "TMP"):
        value = os.environ.get(name)
        if value and os.path.isdir(value):
            return Path(value)
    return Path("/tmp")


def scratch_root_name() -> str:
    """The per-user scratch root's name in the temp dir (one spelling, shared with the tests)."""
    return f"rnnedge-scratch-{os.getuid()}"


def scratch_root() -> Path:
    """The per-user folder that holds every process's scratch folder."""
    return _system_temp() / scratch_root_name()


def _own_root(root: Path) -> bool:
    """Make `root` (0700) if absent; True only when it is a real folder of ours, not a symlink."""
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(root)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()


def _is_stale(folder: Path) -> bool:
    """True when no live process holds `folder`'s lock (or it never got one and is old)."""
    try:
        fd = os.open(folder / OWNER, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        try:
            return time.time() - os.lstat(folder).st_mtime > UNLOCKED_GRACE_S
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: its process is alive
    finally:
        os.close(fd)  # (releases the probe's own lock, if it got one)
    return True


def sweep(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders of processes that ended without removing theirs; returns them."""
    root = root or scratch_root()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if _held is not None and Path(entry.path) == _held[0]:
            continue
        gone = entry.name.endswith(GONE)  # its owner was removing it when it died
        if entry.is_dir(follow_symlinks=False) and (gone or _is_stale(Path(entry.path))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def enter() -> Path | None:
    """Sweep, then make this process's scratch folder the temp dir of this process and of the tools it
    starts (tempfile.tempdir, TMPDIR). Returns it, or None when no safe root exists (then nothing changes)."""
    global _held
    if _held is not None:
        return _held[0]
    root = scratch_root()
    if not _own_root(root):
        return None
    sweep(root)
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}.", dir=root))
    except OSError:  # a full or read-only temp dir: run without (the command's own writes say why, if any)
        return None
    try:
        fd = os.open(folder / OWNER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held = (folder, fd, tempfile.tempdir, os.environ.get("TMPDIR"))
    tempfile.tempdir = str(folder)
    os.environ["TMPDIR"] = str(folder)
    return folder


def leave() -> None:
    """Remove this process's scratch folder and restore the temp dir it replaced."""
    global _held
    if _held is None:
        return
    folder, fd, old_tempdir, old_env = _held
    _held = None
    tempfile.tempdir = old_tempdir
    if old_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old_env
    with contextlib.suppress(OSError):  # renamed first: a kill during the removal leaves a folder any sweep removes
        folder = folder.rename(folder.with_name(folder.name + GONE))
    shutil.rmtree(folder, ignore_errors=True)
    os.close(fd)
