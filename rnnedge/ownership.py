"""Output folders rnnedge can prove it owns (torch-free): a ledger of what it wrote, checked before
anything is replaced or removed.

Every folder rnnedge writes (checkpoint, export, drift/compare report, pipeline) gets
`.rnnedge-ledger.json`: {"format": "rnnedge-ledger", "format_version": 1, "files": {relative path:
[{"size", "sha256"}, ...]}}. A file is rnnedge's only while it is a regular file (never a symlink, no
symlinked folder on the way) whose current size and sha256 match one of its ledger entries; a name may
list two versions while a write is being committed (the old one and the new one), so a kill at any
point leaves every file either provably ours or not ours. A report's or manifest's own file list is user
input and never decides a deletion.

A non-empty folder without a ledger is not rnnedge's: it is refused unless the command's `--overwrite`
is given. Legacy rule: a folder an older rnnedge wrote (its manifest.json / report.json / config.json
but no ledger) is treated the same way: nothing in it can be proven ours, so the refusal says it was
written by an older rnnedge and names `--overwrite`; with it, rnnedge writes its files over the same
names (regular files only) and deletes nothing that was there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rnnedge.errors import RnnedgeError

LEDGER = ".rnnedge-ledger.json"
LEDGER_FORMAT = "rnnedge-ledger"
MAX_LEDGER_BYTES = 8 << 20
LEGACY_MARKERS = ("manifest.json", "report.json", "compare.json", "config.json", "summary.json")
IGNORED = (LEDGER,)  # never counted as a user's file in a folder


@dataclass(frozen=True)
class Entry:
    """One version of a file rnnedge wrote: its size and sha256."""

    size: int
    sha256: str

    def to_dict(self) -> dict[str, object]:
        return {"size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Ledger:
    """What rnnedge wrote in `folder`: relative path -> its accepted versions."""

    folder: Path
    files: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)

    def owns(self, rel: str) -> bool:
        """True when `rel` is a regular file (no symlink on the way) whose bytes match the ledger."""
        entries = self.files.get(rel)
        if not entries:
            return False
        digest = file_digest(self.folder, rel)
        return digest is not None and digest in entries


def entry_of(data: bytes) -> Entry:
    """The ledger entry of `data`."""
    return Entry(len(data), hashlib.sha256(data).hexdigest())


def safe_relative(name: object) -> str | None:
    """`name` if it is a plain relative POSIX path inside a folder (no '..', not absolute), else None."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts) or str(path) != name:
        return None
    return name


def regular(folder: Path, rel: str) -> os.stat_result | None:
    """lstat of folder/rel when it is a regular file reached without any symlink below `folder`, else None."""
    path = folder
    parts = PurePosixPath(rel).parts
    try:
        for i, part in enumerate(parts):
            path = path / part
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or (i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode)):
                return None
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def file_digest(folder: Path, rel: str) -> Entry | None:
    """Size and sha256 of folder/rel (streamed, O_NOFOLLOW), or None if it is not a plain regular file."""
    if regular(folder, rel) is None:
        return None
    try:
        fd = os.open(folder / rel, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        h, size = hashlib.sha256(), 0
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return Entry(size, h.hexdigest())


def read_ledger(folder: Path) -> Ledger | None:
    """The folder's ledger, or None when it has none. A damaged ledger is refused in one line."""
    path = folder / LEDGER
    st = regular(folder, LEDGER)
    if st is None:
        if os.path.lexists(path):
            raise RnnedgeError(f"{path} is not a regular file; rnnedge will not trust or replace it")
        return None
    try:
        if st.st_size > MAX_LEDGER_BYTES:
            raise ValueError("too large")
        with open(path, "rb") as fh:
            obj = json.loads(fh.read(MAX_LEDGER_BYTES + 1).decode("utf-8"))
        if not isinstance(obj, dict) or obj.get("format") != LEDGER_FORMAT or not isinstance(obj.get("files"), dict):
            raise ValueError("not an rnnedge ledger")
        files: dict[str, tuple[Entry, ...]] = {}
        for name, entries in obj["files"].items():
            if safe_relative(name) is None or not isinstance(entries, list):
                raise ValueError(f"bad entry {str(name)[:80]!r}")
            files[name] = tuple(
                Entry(int(e["size"]), str(e["sha256"])) for e in entries if isinstance(e, dict) and "sha256" in e
            )
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise RnnedgeError(f"{path} is damaged ({exc}); rnnedge cannot tell which files are its own") from None
    return Ledger(folder, files)


HOUSEKEEPING = (
    ".rnnedge-staging-",
    ".rnnedge-commit",
    ".rnnedge-probe.",
)  # a killed writer's, removed or finished by the next


def user_entries(folder: Path) -> list[str]:
    """Names in `folder` (top level) that are not rnnedge's bookkeeping (ledger, staging and commit folders)."""
    try:
        return sorted(n for n in os.listdir(folder) if n not in IGNORED and not n.startswith(HOUSEKEEPING))
    except (FileNotFoundError, NotADirectoryError):
        return []  # not there (or under a file): the writer's own probe words that


def check_folder(
    folder: Path, *, overwrite: bool = False, what: str = "--out", option: str | None = "--overwrite"
) -> Ledger:
    """The ledger to write `folder` with: an empty one for a new or empty folder, its own for a folder
    rnnedge wrote; RnnedgeError (one line, naming `option`) for a non-empty folder without a ledger
    unless `overwrite`. A path that exists and is not a folder is refused. A commit a killed run left
    there is rolled forward first (rnnedge/commit.py)."""
    from rnnedge.commit import settle

    if os.path.lexists(folder) and not folder.is_dir():
        raise RnnedgeError(f"{what} {folder} exists and is not a folder; choose another {what}")
    if folder.is_dir():
        settle(folder)
    ledger = read_ledger(folder) if folder.is_dir() else None
    if ledger is not None:
        return ledger
    names = user_entries(folder)
    if names and not overwrite:
        older = [n for n in LEGACY_MARKERS if n in names]
        why = (
            f"was written by an older rnnedge (it has {older[0]} but no {LEDGER}), "
            "so no file in it can be proven rnnedge's"
            if older
            else "is not empty and was not written by rnnedge"
        )
        hint = f"pass {option} to write into it (nothing of yours is deleted) or choose another {what}"
        raise RnnedgeError(f"{what} {folder} {why}; " + (hint if option else f"choose another {what}"))
    return Ledger(folder, {})


def check_replaceable(
    ledger: Ledger, names: Iterable[str], *, overwrite: bool, what: str = "--out", option: str | None = "--overwrite"
) -> None:
    """RnnedgeError unless each of `names` is free, rnnedge's own, or (with `overwrite`) a regular file.
    A symlink, folder or device under one of the names is refused even with `overwrite`."""
    names = list(names)
    for rel in names:  # first what no option allows: a symlinked folder or a file on the way
        parents = [ledger.folder / p for p in reversed(PurePosixPath(rel).parents) if str(p) != "."]
        if any(os.path.lexists(p) and (os.path.islink(p) or not p.is_dir()) for p in parents):
            raise RnnedgeError(
                f"{ledger.folder / rel}: a folder on the way is a symlink or not a folder; choose another {what}"
            )
    for rel in names:
        path = ledger.folder / rel
        if not os.path.lexists(path) or ledger.owns(rel):
            continue
        if regular(ledger.folder, rel) is None:
            raise RnnedgeError(f"{path} exists and is not a regular file; rnnedge will not replace it")
        if not overwrite:
            hint = f"move it, choose another {what} or pass {option}" if option else "move it"
            raise RnnedgeError(f"{path} exists and was not written by rnnedge; {hint}")


def removable(ledger: Ledger, names: Iterable[str]) -> list[str]:
    """Those of `names` rnnedge may delete: listed in the ledger and still byte-for-byte what it wrote."""
    return [rel for rel in names if ledger.owns(rel)]


def owned_names(ledger: Ledger) -> list[str]:
    """Every ledger name whose file is still rnnedge's (sorted)."""
    return sorted(rel for rel in ledger.files if ledger.owns(rel))


def ledger_bytes(files: Mapping[str, Iterable[Entry]]) -> bytes:
    """The ledger file's bytes for `files` (relative path -> accepted versions)."""
    body = {
        "format": LEDGER_FORMAT,
        "format_version": 1,
        "files": {rel: [e.to_dict() for e in dict.fromkeys(entries)] for rel, entries in sorted(files.items())},
    }
    return (json.dumps(body, indent=2) + "\n").encode("utf-8")


def write_ledger(folder: Path, files: Mapping[str, Iterable[Entry]]) -> None:
    """Atomically write the ledger of `folder` (relative path -> accepted versions)."""
    from rnnedge.io import write_bytes

    write_bytes(folder / LEDGER, ledger_bytes(files))


def pending(ledger: Ledger, new: Mapping[str, Entry]) -> dict[str, tuple[Entry, ...]]:
    """The ledger to write before committing `new`: every file still ours, each new name with both its
    current (owned) version and the new one, so a kill mid-commit leaves every file provably ours."""
    files: dict[str, tuple[Entry, ...]] = {}
    for rel in owned_names(ledger):
        digest = file_digest(ledger.folder, rel)
        files[rel] = (digest,) if digest is not None else ()
    for rel, entry in new.items():
        files[rel] = (*files.get(rel, ()), entry)
    return files


def final(ledger: Ledger, new: Mapping[str, Entry], removed: Iterable[str] = ()) -> dict[str, tuple[Entry, ...]]:
    """The ledger after a commit: files still ours (minus `removed`) and the new ones."""
    gone = set(removed)
    files = {rel: entries for rel, entries in pending(ledger, {}).items() if rel not in gone}
    files.update({rel: (entry,) for rel, entry in new.items()})
    return files


@contextlib.contextmanager
def committing(ledger: Ledger, new: Mapping[str, Entry]) -> Iterator[set[str]]:
    """Around the renames that put `new` in place: first a ledger accepting old and new versions, after
    the block the final one (without the names the block adds to the yielded set: files it removed).
    If the block raises, the ledger as it was is put back (a hard-linked copy; no space needed)."""
    folder = ledger.folder
    path = folder / LEDGER
    backup = folder / f".{LEDGER}.{secrets.token_hex(4)}.tmp"
    had = os.path.lexists(path)
    if had:
        os.link(path, backup)
    removed: set[str] = set()
    try:
        write_ledger(folder, pending(ledger, new))
        try:
            yield removed
        except BaseException:
            with contextlib.suppress(OSError):
                os.replace(backup, path) if had else os.unlink(path)
            raise
        write_ledger(folder, final(ledger, new, removed))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(backup)
