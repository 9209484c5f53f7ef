"""Atomic file output (torch-free): write to a temp name beside the target, rename when complete."""

from __future__ import annotations

import codecs
import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from rnnedge.errors import RnnedgeError, WriteError

MAX_JSON_BYTES = 16 << 20  # a config or manifest rnnedge writes is a few kB; larger is not one of ours
MAX_TEXT_BYTES = 1 << 30  # a text file (train, eval, drift, calibration): at most 1 GiB
TEXT_CHUNK_BYTES = 4 << 20  # texts are read, decoded and normalized this much at a time


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success rename it onto `target`, else delete it.

    An OSError while the temp file is made, written or renamed (a full disk, no permission) becomes
    one WriteError naming `target`; `target` itself is then as it was.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WriteError(f"cannot write to {target.parent}: {reason}", reason) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
            raise WriteError(f"cannot write {target}: {reason}", reason) from exc
        raise


def check_writable(target: str | os.PathLike[str], what: str = "output") -> None:
    """WriteError unless a file can be written at `target`: a temp file is made and removed in its folder,
    or in the nearest existing folder above it (which atomic_path would create). Creates nothing lasting."""
    target = Path(target)
    folder = target.parent.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(target))
        fd, probe = tempfile.mkstemp(prefix=".rnnedge-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WriteError(f"cannot write {what} {target}: {reason}", reason) from None


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write `data` to `target`."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Atomically write `text` (UTF-8) to `target`."""
    write_bytes(target, text.encode("utf-8"))


def display_name(path: str | os.PathLike[str]) -> str:
    """`path` as text any UTF-8 file or terminal can hold: a file name that is not UTF-8 (Latin-1 bytes,
    which Python carries as lone surrogates) shows its odd bytes as \\xNN escapes, e.g. caf\\xe9.txt."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", errors="backslashreplace")


def json_text(obj: Any) -> str:
    """`obj` as the indented JSON rnnedge writes (manifests, configs, summaries)."""
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    write_text(target, json_text(obj))


def read_regular(path: str | os.PathLike[str], limit: int, what: str = "file") -> bytes:
    """The bytes of `path`, refused in one RnnedgeError unless it is a regular file of at most `limit`
    bytes (a FIFO is not waited on, /dev/zero not read). FileNotFoundError / OSError pass through."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RnnedgeError(f"{what} {path} is not a regular file")
        if st.st_size > limit:
            raise RnnedgeError(f"{what} {path} is too large ({st.st_size:,} bytes; at most {limit:,})")
        data = fh.read(min(st.st_size, limit) + 1)  # one byte more than stat says: a file still growing
    if len(data) > min(st.st_size, limit):
        raise RnnedgeError(f"{what} {path} changed size while it was read")
    return data


def read_json(path: str | os.PathLike[str], what: str = "file") -> Any:
    """Read a JSON file, turning a missing, corrupt, absurdly large or absurdly nested file into one
    clear RnnedgeError."""
    path = Path(path)
    try:
        return json.loads(read_regular(path, MAX_JSON_BYTES, what).decode("utf-8"))
    except FileNotFoundError as exc:
        raise RnnedgeError(f"{what} not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RnnedgeError(f"{what} {path} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise RnnedgeError(f"{what} {path} is not valid JSON: nested too deeply") from None


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


def normalize_newlines(text: str) -> str:
    """THE line-ending rule of every text rnnedge reads (train, eval, drift, quantize, compare, pipeline):
    CRLF and a lone CR become LF, so a model meets its training text the same way everywhere."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def iter_text(
    path: str | os.PathLike[str],
    what: str = "text file",
    *,
    limit: int = MAX_TEXT_BYTES,
    max_chars: int | None = None,
    hasher: _Hasher | None = None,
    chunk_bytes: int = TEXT_CHUNK_BYTES,
) -> Iterator[str]:
    """A UTF-8 text file as pieces of at most ~`chunk_bytes` characters, line endings normalized
    (normalize_newlines), never more than one piece in memory; stops after `max_chars` characters.

    Refused in one RnnedgeError: not a regular file (a FIFO is not waited on, /dev/zero not read),
    larger than `limit` bytes when read to its end, or not UTF-8 (naming the byte offset).
    FileNotFoundError / OSError pass through. `hasher` (e.g. hashlib.sha256()) is fed the raw bytes read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    name = display_name(path)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RnnedgeError(f"{what} {name} is not a regular file")
        if max_chars is None and st.st_size > limit:
            raise RnnedgeError(f"{what} {name} is too large ({st.st_size:,} bytes; at most {limit:,})")
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        offset, chars, held_cr = 0, 0, False
        while max_chars is None or chars < max_chars:
            want = chunk_bytes if max_chars is None else min(chunk_bytes, 4 * (max_chars - chars))
            raw = fh.read(want)  # a prefix reads at most 4 bytes per character it still needs
            if offset + len(raw) > limit and max_chars is None:
                raise RnnedgeError(f"{what} {name} grew past {limit:,} bytes while it was read")
            if hasher is not None:
                hasher.update(raw)
            try:
                piece = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                raise RnnedgeError(f"{what} {name} is not UTF-8 text (byte {at:,}: {exc.reason})") from None
            offset += len(raw)
            if held_cr:
                piece = "\r" + piece
            held_cr = bool(raw) and piece.endswith("\r")  # a CR at the end may be half of a CRLF
            if held_cr:
                piece = piece[:-1]
            piece = normalize_newlines(piece)
            if max_chars is not None and chars + len(piece) > max_chars:
                piece = piece[: max_chars - chars]
            chars += len(piece)
            if piece:
                yield piece
            if not raw:
                break


def read_text_file(
    path: str | os.PathLike[str], what: str = "text file", *, limit: int = MAX_TEXT_BYTES, max_chars: int | None = None
) -> str:
    """The whole text (or its first `max_chars` characters) of a UTF-8 file, read by iter_text."""
    return "".join(iter_text(path, what, limit=limit, max_chars=max_chars))
