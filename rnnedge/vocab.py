"""Character vocabulary (torch-free: shared by training, the exporter and the on-device runtime)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rnnedge.errors import ConfigError, UnknownCharacterError

OnUnknown = Literal["error", "skip"]
_MAX_LISTED = 5


@dataclass(frozen=True)
class CharVocab:
    """A sorted set of characters; token id = index in `chars`."""

    chars: str
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.chars, str):
            raise ConfigError(f"vocabulary must be a string of characters, not {type(self.chars).__name__}")
        if not self.chars:
            raise ConfigError("vocabulary is empty")
        if len(set(self.chars)) != len(self.chars):
            raise ConfigError("vocabulary has repeated characters")
        bad = next((c for c in self.chars if "\ud800" <= c <= "\udfff"), None)
        if bad is not None:  # a lone surrogate is no character: no UTF-8 file, graph or terminal can hold it
            raise ConfigError(f"vocabulary holds {bad!r}, a lone surrogate, which is not a character")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """Build the vocabulary of every distinct character in `text`."""
        if not text:
            raise ConfigError("cannot build a vocabulary from empty text")
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: object) -> bool:
        return ch in self._index

    def encode(self, text: str, on_unknown: OnUnknown = "error", dtype: np.dtype | type = np.int64) -> np.ndarray:
        """Text -> ids (int64, or the compact `dtype` given, e.g. ids_dtype(len(vocab))), vectorized over
        code points. Unknown characters raise (naming them and their positions) or are skipped."""
        if on_unknown not in ("error", "skip"):
            raise ConfigError(f"on_unknown must be 'error' or 'skip', not {on_unknown!r}")
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")  # (N,)
        codes, order = self._sorted
        pos = np.minimum(np.searchsorted(codes, points), len(codes) - 1)  # (N,)
        known = codes[pos] == points  # (N,)
        ids = order[pos].astype(dtype, copy=False)  # (N,)
        if not known.all():
            if on_unknown == "skip":
                return ids[known]
            raise UnknownCharacterError(describe_unknown(text, np.flatnonzero(~known)))
        return ids

    @property
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted code points, the id of each): the lookup table encode searches."""
        table = self.__dict__.get("_table")
        if table is None:
            codes = np.array([ord(c) for c in self.chars], dtype=np.uint32)
            order = np.argsort(codes, kind="stable")
            table = (codes[order], order.astype(np.int64))
            object.__setattr__(self, "_table", table)
        return table

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Ids -> text; ids outside the vocabulary raise."""
        chars = self.chars
        out = []
        for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if not 0 <= i < len(chars):
                raise UnknownCharacterError(f"token id {i} is outside the vocabulary (size {len(chars)})")
            out.append(chars[i])
        return "".join(out)


def ids_dtype(vocab_size: int) -> type:
    """The smallest dtype torch and NumPy both index with that holds ids below `vocab_size`: a 200 MB
    char text is then 200 MB of ids, not 1.6 GB of int64."""
    if vocab_size <= 1 << 8:
        return np.uint8
    return np.int16 if vocab_size <= 1 << 15 else np.int32


def describe_unknown(text: str, positions: np.ndarray) -> str:
    """One line naming the unknown characters and where they first occur."""
    seen: dict[str, int] = {}
    for p in positions.tolist():
        seen.setdefault(text[p], p)
    listed = ", ".join(f"{c!r} at position {p}" for c, p in list(seen.items())[:_MAX_LISTED])
    more = f" and {len(seen) - _MAX_LISTED} more" if len(seen) > _MAX_LISTED else ""
    return (
        f"{len(positions)} character(s) outside the vocabulary: {listed}{more} "
        "(use on_unknown='skip' / --on-unknown skip to drop them)"
    )
